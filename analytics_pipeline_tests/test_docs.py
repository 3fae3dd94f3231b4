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
