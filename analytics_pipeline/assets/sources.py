"""The OLTP tables as external assets, so the UI shows lineage from each source to its rollups.

They are observed, never materialized: the product writes them.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.sources import tables as tables_module
from analytics_pipeline.sources.tables import metadata as oltp_metadata

SOURCE_PREFIX = "oltp"
SOURCE_GROUP = "oltp_sources"
# Who to ask about an asset, shown and filterable in the UI's catalog.
OWNER = "team:data-platform"


def source_key(table: sa.Table) -> dg.AssetKey:
    return dg.AssetKey([SOURCE_PREFIX, table.name])


def column_schema(table: sa.Table, suffixes: Mapping[str, str] | None = None) -> dg.TableSchema:
    """A table's columns as the UI shows them, descriptions taken from column comments (and
    `suffixes`, per column name, appended)."""
    suffixes = suffixes or {}
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=str(c.type.compile(dialect=_PG_DIALECT)).lower(),
                description=" ".join(p for p in (c.comment, suffixes.get(c.name)) if p) or None,
            )
            for c in table.columns
        ]
    )


def source_code(table: sa.Table) -> dict[str, dg.CodeReferencesMetadataValue]:
    """Where the table is declared: its `_table(...)` call in the Core mirror of the contract."""
    source_file = inspect.getsourcefile(tables_module)
    if source_file is None:
        raise TypeError(f"{tables_module.__name__} has no source file to link to")
    path = Path(source_file).resolve()
    lines = path.read_text().splitlines()
    line = next(
        (i for i, text in enumerate(lines, start=1) if text.strip() == f'"{table.name}",'), None
    )
    return code_references(
        (path, line - 1 if line else None, f"{table.name}: its columns (mirror of the contract)")
    )


def code_references(
    *refs: tuple[Path, int | None, str],
) -> dict[str, dg.CodeReferencesMetadataValue]:
    """The `dagster/code_references` entry of an asset's metadata: (file, line, label) each."""
    # Code references are beta in Dagster 1.13; we pin Dagster, so the warning says nothing
    # anyone can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        return {
            "dagster/code_references": dg.CodeReferencesMetadataValue(
                code_references=[
                    dg.LocalFileCodeReference(file_path=str(f), line_number=n, label=label)
                    for f, n, label in refs
                ]
            )
        }


# SQLAlchemy leaves the dialect constructors untyped.
_PG_DIALECT = sa.dialects.postgresql.dialect()  # type: ignore[no-untyped-call]

source_specs = [
    dg.AssetSpec(
        key=source_key(table),
        description=table.comment,
        group_name=SOURCE_GROUP,
        kinds={"postgres"},
        owners=[OWNER],
        metadata={
            "dagster/table_name": f"oltp.public.{table.name}",
            "dagster/column_schema": column_schema(table),
            **source_code(table),
        },
        tags={"layer": "oltp"},
    )
    for table in oltp_metadata.sorted_tables
]
