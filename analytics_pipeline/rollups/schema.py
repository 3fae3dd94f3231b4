"""How an OLAP table is declared: the (tenant_id, date) grain, the contract columns, bookkeeping.

Column comments are the data dictionary: they become `COMMENT ON COLUMN` in PostgreSQL and the
column descriptions the Dagster UI shows, so both always say the same thing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

SCHEMA = "analytics"
RUN_ID_SETTING = "analytics_pipeline.run_id"
# The writer sets RUN_ID_SETTING transaction-locally; the column default picks it up, so rows
# written by INSERT ... SELECT and by COPY are stamped alike without passing the id per row.
_RUN_ID_DEFAULT = "current_setting('analytics_pipeline.run_id', true)"

metadata = sa.MetaData(schema=SCHEMA)

# Written by the pipeline, not part of the contract (which allows such extra columns).
BOOKKEEPING_COLUMNS = ("refreshed_at", "refreshed_by_run")


def count_column(name: str, comment: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger, nullable=False, comment=comment)


def money_column(name: str, comment: str) -> sa.Column[Any]:
    return sa.Column(name, sa.BigInteger, nullable=False, comment=comment)


def ratio_column(name: str, comment: str) -> sa.Column[Any]:
    return sa.Column(name, sa.Numeric, nullable=True, comment=comment)


def key_column(
    name: str, comment: str, type_: sa.types.TypeEngine[Any] | None = None
) -> sa.Column[Any]:
    """A grain column beyond tenant and date; NULL is a value of its own (one row for all NULLs)."""
    return sa.Column(name, type_ if type_ is not None else sa.Text, nullable=True, comment=comment)


def olap_table(
    name: str,
    *,
    grain: list[sa.Column[Any]],
    columns: list[sa.Column[Any]],
    comment: str,
) -> sa.Table:
    """Declare `analytics.<name>` with grain (tenant_id, date, *grain) unique, NULLs equal."""
    grain_names = ["tenant_id", "date", *(c.name for c in grain)]
    return sa.Table(
        name,
        metadata,
        sa.Column("tenant_id", sa.Text, nullable=False, comment="Tenant (partition dimension)."),
        sa.Column("date", sa.Date, nullable=False, comment="UTC day (partition dimension)."),
        *grain,
        *columns,
        sa.Column(
            "refreshed_at",
            sa.TIMESTAMP(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
            comment="When the pipeline wrote this row (its transaction's start).",
        ),
        sa.Column(
            "refreshed_by_run",
            sa.Text,
            nullable=True,
            server_default=sa.text(_RUN_ID_DEFAULT),
            comment="Dagster run id that wrote this row (NULL when written outside Dagster).",
        ),
        sa.Index(
            f"{name}_grain",
            *grain_names,
            unique=True,
            postgresql_nulls_not_distinct=True,
        ),
        comment=comment,
    )


def contract_columns(table: sa.Table) -> list[sa.Column[Any]]:
    """The columns a rollup's SELECT produces: everything but the bookkeeping columns."""
    return [c for c in table.columns if c.name not in BOOKKEEPING_COLUMNS]
