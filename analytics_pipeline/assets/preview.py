"""A few written rows as a table on each materialization, so the UI shows what a run produced."""

from __future__ import annotations

import datetime as dt
import decimal

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.rollups.schema import contract_columns
from analytics_pipeline.rollups.spec import Rollup

PREVIEW_ROWS = 5


def _cell(value: object) -> str | int | float | bool | None:
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def preview(rollup: Rollup, olap: OlapDatabase, partition: TenantDay) -> dg.MetadataValue:
    """Up to PREVIEW_ROWS rows of one partition the run wrote (read by the grain index)."""
    columns = contract_columns(rollup.table)
    grain = next(index for index in rollup.table.indexes if index.unique).columns
    query = (
        sa.select(*columns)
        .where(
            rollup.table.c.tenant_id == partition.tenant_id,
            rollup.table.c.date == partition.day,
        )
        .order_by(*grain)
        .limit(PREVIEW_ROWS)
    )
    with olap.engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _cell(v) for k, v in row.items()}) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c.name, str(c.type)) for c in columns]),
    )
