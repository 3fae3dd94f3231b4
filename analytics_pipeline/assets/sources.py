"""The OLTP tables as external assets, so the UI shows lineage from each source to its rollups.

They are observed, never materialized: the product writes them.
"""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.sources.tables import metadata as oltp_metadata

SOURCE_PREFIX = "oltp"
SOURCE_GROUP = "oltp_sources"
# Who to ask about an asset, shown and filterable in the UI's catalog.
OWNER = "team:data-platform"


def source_key(table: sa.Table) -> dg.AssetKey:
    return dg.AssetKey([SOURCE_PREFIX, table.name])


def column_schema(table: sa.Table) -> dg.TableSchema:
    """A table's columns as the UI shows them, descriptions taken from column comments."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=c.name,
                type=str(c.type.compile(dialect=_PG_DIALECT)).lower(),
                description=c.comment,
            )
            for c in table.columns
        ]
    )


_PG_DIALECT = sa.dialects.postgresql.dialect()

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
        },
        tags={"layer": "oltp"},
    )
    for table in oltp_metadata.sorted_tables
]
