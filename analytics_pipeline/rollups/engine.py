"""Refreshing a set of (tenant, date) partitions of one OLAP table, atomically.

One transaction on the OLAP side: lock the run's tenants of that table, DELETE exactly the run's
partitions, write their fresh rows, check the invariants, commit. A failure anywhere rolls all of
it back, so readers see either the old rows or the new ones, never a mix or a gap.

Where the rows come from depends on where OLTP is:
- same database: `INSERT ... SELECT ... GROUP BY`; the rows never leave PostgreSQL;
- another database: the SELECT runs in OLTP inside one read-only repeatable-read snapshot and its
  result is streamed with `COPY (SELECT ...) TO STDOUT` straight into `COPY ... FROM STDIN` on
  OLAP, block by block: only aggregated rows cross, in bulk, and never all in memory at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY

from analytics_pipeline.errors import DataQualityError, RollupError
from analytics_pipeline.partitions import TenantDay, to_windows
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.sql import Windows, window_params
from analytics_pipeline.warehouse.metadata import RUN_ID_SETTING

IN_DATABASE = "in-database"
COPY = "copy"


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did, for logs and materialization metadata."""

    table: str
    partitions: int
    windows: int
    rows_deleted: int
    rows_written: int
    path: str
    seconds: float


def refresh(
    rollup: Rollup,
    partitions: Sequence[TenantDay],
    *,
    oltp: OltpDatabase,
    olap: OlapDatabase,
    run_id: str | None = None,
) -> RefreshResult:
    """Recompute exactly `partitions` of `rollup.table` from OLTP and replace them in OLAP."""
    if not partitions:
        raise RollupError(f"{rollup.name}: a refresh needs at least one (tenant, date) partition")
    windows = to_windows(partitions)
    params = window_params(windows)
    started = time.perf_counter()
    same_db = oltp.is_same_database(olap)
    try:
        with olap.transaction() as conn:
            _begin_write(conn, rollup, sorted({w.tenant_id for w in windows}), run_id)
            w = Windows()
            deleted = conn.execute(
                sa.delete(rollup.table).where(
                    w.contains_day(rollup.table.c.tenant_id, rollup.table.c.date)
                ),
                params,
            ).rowcount
            if same_db:
                written = conn.execute(
                    _insert_from_select(rollup),
                    params,
                    execution_options={"preserve_rowcount": True},
                ).rowcount
            else:
                written = _copy_across(rollup, params, oltp=oltp, olap_conn=conn)
            check_invariants(conn, rollup, params)
    except DataQualityError:
        raise
    except sa.exc.DBAPIError as exc:
        raise RollupError(
            f"{rollup.name}: refreshing {len(partitions)} partition(s) "
            f"({_describe(windows)}) failed in the database; the previous rows are unchanged. "
            f"Cause: {type(exc.orig).__name__}: {str(exc.orig).strip()}"
        ) from exc
    return RefreshResult(
        table=rollup.name,
        partitions=len(partitions),
        windows=len(windows),
        rows_deleted=deleted,
        rows_written=written,
        path=IN_DATABASE if same_db else COPY,
        seconds=time.perf_counter() - started,
    )


def _begin_write(
    conn: sa.Connection, rollup: Rollup, tenant_ids: list[str], run_id: str | None
) -> None:
    # Two runs replacing the same tenant's rows of one table would each DELETE what the other
    # cannot yet see and then collide on the grain index; a transaction-scoped advisory lock per
    # (table, tenant), taken in sorted order so that runs cannot deadlock, serialises them.
    tenant = sa.func.unnest(sa.bindparam("tenants", tenant_ids, type_=ARRAY(sa.Text))).alias("t")
    key = sa.func.hashtextextended(sa.literal(rollup.name + "/") + tenant.column, 0)
    # unnest yields the (sorted) array in order, so the locks are taken in that order.
    conn.execute(sa.select(sa.func.count(sa.func.pg_advisory_xact_lock(key))).select_from(tenant))
    conn.execute(sa.select(sa.func.set_config(RUN_ID_SETTING, run_id or "", True)))


def _insert_from_select(rollup: Rollup) -> sa.Insert:
    columns = [c.name for c in rollup.output_columns]
    return sa.insert(rollup.table).from_select(columns, rollup.select(Windows()))


def _copy_across(
    rollup: Rollup, params: dict, *, oltp: OltpDatabase, olap_conn: sa.Connection
) -> int:
    columns = [c.name for c in rollup.output_columns]
    target = sa.Table(rollup.table.name, sa.MetaData(), schema=rollup.table.schema)
    with oltp.read_snapshot() as src_conn:
        compiled = rollup.select(Windows()).compile(dialect=src_conn.dialect)
        # psycopg binds COPY's parameters on the client (PostgreSQL takes none in COPY); they are
        # still passed as parameters and escaped by the driver, never formatted in by us.
        copy_out_sql = "COPY (" + compiled.string + ") TO STDOUT"
        column_list = ", ".join(olap_conn.dialect.identifier_preparer.quote(c) for c in columns)
        copy_in_sql = (
            "COPY "
            + olap_conn.dialect.identifier_preparer.format_table(target)
            + " ("
            + column_list
            + ") FROM STDIN"
        )
        src_cur = src_conn.connection.driver_connection.cursor()
        dst_cur = olap_conn.connection.driver_connection.cursor()
        with (
            src_cur.copy(copy_out_sql, compiled.construct_params(params)) as out,
            dst_cur.copy(copy_in_sql) as into,
        ):
            for block in out:
                into.write(block)
        return dst_cur.rowcount


def check_invariants(conn: sa.Connection, rollup: Rollup, params: dict) -> None:
    """Fail (and so roll back) if any freshly written row of the run breaks an invariant."""
    if not rollup.invariants:
        return
    t = rollup.table
    grain = [c for c in t.columns if c.name in _grain_names(t)]
    w = Windows()
    for inv in rollup.invariants:
        bad = conn.execute(
            sa.select(*grain)
            .select_from(t.join(w.relation, w.contains_day(t.c.tenant_id, t.c.date)))
            .where(sa.not_(sa.func.coalesce(inv.condition(t), sa.false())))
            .order_by(*grain)
            .limit(5),
            params,
        ).all()
        if bad:
            first = ", ".join(f"{k}={v}" for k, v in bad[0]._mapping.items())
            raise DataQualityError(
                f"{rollup.name}: rule {inv.name!r} ({inv.description}) is broken by "
                f"{len(bad)}{'+' if len(bad) == 5 else ''} row(s), first at {first}. Nothing was "
                "written; the previous rows are unchanged. Check the OLTP rows of that "
                "partition, or the rollup's SELECT."
            )


def _grain_names(table: sa.Table) -> list[str]:
    index = next(i for i in table.indexes if i.name == f"{table.name}_grain")
    return [c.name for c in index.columns]


def _describe(windows) -> str:
    shown = "; ".join(f"{w.tenant_id} {w.first_day}..{w.end_day}" for w in windows[:3])
    return shown + (f"; +{len(windows) - 3} more" if len(windows) > 3 else "")
