"""The variables table of docs/OPERATIONS.md, rendered from the registry.

`python -m analytics_pipeline.settings.docs` rewrites the table in place (between its markers);
test_settings.py fails while the file and the registry differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

from analytics_pipeline.settings.registry import VARIABLES
from analytics_pipeline.settings.variable import DAGSTER

BEGIN = "<!-- variables: generated from analytics_pipeline/settings/registry.py by `python -m analytics_pipeline.settings.docs` -->"  # noqa: E501
END = "<!-- end of variables -->"
OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "OPERATIONS.md"


def variables_table() -> str:
    """The Markdown table: one row per declared variable, in the registry's order."""
    lines = [
        "| variable | default | expected | used for |",
        "|---|---|---|---|",
    ]
    for var in VARIABLES:
        used_for = var.doc + (" (read by Dagster itself)" if var.reader == DAGSTER else "")
        lines.append(f"| `{var.name}` | {var.default_doc} | {var.form} | {used_for} |")
    return "\n".join(lines)


def documented_table(text: str) -> str:
    """The table as written between the markers of `text`."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        end = text.index(END, start)
    except ValueError:
        raise ValueError(f"the markers {BEGIN!r} ... {END!r} are missing") from None
    return text[start:end].strip()


def main() -> int:
    text = OPERATIONS.read_text()
    old = documented_table(text)
    OPERATIONS.write_text(text.replace(old, variables_table(), 1))
    print(f"{OPERATIONS}: {len(VARIABLES)} variables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
