"""Docs that must stay true as the code changes.

Why: dashboard authors read the data dictionary, not the code; and CI must run the README's own
test command, or the README's promise goes unchecked.
"""

from __future__ import annotations

import re
from pathlib import Path

from analytics_pipeline.rollups.tables import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


def test_data_dictionary_documents_every_olap_column():
    text = (ROOT / "docs" / "DATA_DICTIONARY.md").read_text()
    for rollup in REGISTRY:
        section = text.split(f"## {rollup.name}\n", 1)
        assert len(section) == 2, f"no section for {rollup.name}"
        body = section[1].split("\n## ", 1)[0]
        for column in rollup.output_columns:
            assert re.search(rf"^\| {column.name} \|", body, re.M), f"{rollup.name}.{column.name}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_command = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command.strip() in ci


def test_readme_lists_exactly_the_registered_tables():
    """Adding a table is its module plus one registry line: the README's list of tables is
    checked against the registry, so it cannot silently fall behind."""
    readme = (ROOT / "README.md").read_text()
    paragraph = readme.split("It ships the contract tables", 1)[1].split("(see docs/", 1)[0]
    assert re.findall(r"`(\w+)`", paragraph) == [r.name for r in REGISTRY]


_NUMBERS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


def test_docs_state_no_table_count_but_the_registrys():
    """Prose that counts the tables ("all seven tables") must agree with the registry; better,
    it says "every table" and needs no edit when a table is added. PERFORMANCE.md is exempt:
    it records what was measured, with the tables there were then."""
    pages = [ROOT / "README.md", *(p for p in (ROOT / "docs").glob("*.md"))]
    for page in pages:
        if page.name == "PERFORMANCE.md":
            continue
        text = page.read_text()
        for word in re.findall(r"\b(\w+) (?:OLAP |contract |rollup )?tables\b", text, re.I):
            if word.lower() in _NUMBERS:
                count = _NUMBERS.index(word.lower()) + 1
                assert count == len(REGISTRY), f"{page.name} says {word} tables"
