"""Refreshing a set of (tenant, date) partitions of one OLAP table, atomically.

One transaction on the OLAP side: DELETE exactly the run's partitions, write their fresh rows,
check the table's invariants and reconcile its totals with OLTP, commit. A failure anywhere rolls
all of it back, so readers see either the old rows or the new ones, never a mix or a gap.
(Append-only tables skip the DELETE and insert only rows they do not have yet.)

Where the rows come from depends on where OLTP is:
- same database: the SELECT ... GROUP BY lands in a temporary table (CREATE TABLE AS, which may
  run in parallel) and is inserted from there, in a REPEATABLE READ transaction; the rows never
  leave PostgreSQL, and the rollup and its reconciliation read one snapshot of OLTP;
- another database: the SELECT runs in OLTP inside one read-only repeatable-read snapshot and its
  result is streamed with `COPY (SELECT ...) TO STDOUT` straight into `COPY ... FROM STDIN` on
  OLAP, block by block: only aggregated rows cross, in bulk, and never all in memory at once.

Two refreshes of the same (table, tenant) serialise on advisory locks taken before the
transaction starts (see `OlapDatabase.transaction`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.errors import DataQualityError, RollupError, TransientRollupError
from analytics_pipeline.partitions import TenantDay, TenantWindow, to_windows
from analytics_pipeline.resources.connection_errors import is_transient, permanent_connection_fix
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.checks import (
    check_invariants,
    check_reconciliation,
    oltp_counts,
    partition_totals,
)
from analytics_pipeline.rollups.schema import RUN_ID_SETTING
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.sql import window_params
from analytics_pipeline.rollups.writers import (
    Counts,
    copy_across,
    delete_partitions,
    land_in_database,
    prefer_hash_aggregation,
)

# RefreshResult.path: where the fresh rows were computed (see the module's docstring).
IN_DATABASE = "in-database"
COPY = "copy"


@dataclass(frozen=True)
class PartitionFigures:
    """What a refresh did to one (tenant, date) partition: its own materialization's metadata."""

    rows: int  # rows the partition holds after the refresh
    written: int  # rows this refresh wrote (replace: all of them; append-only: the new ones)
    replaced: int  # rows this refresh deleted (always 0 for append-only tables)


# The figures of a partition the refresh left empty (nothing in OLTP for that day).
EMPTY = PartitionFigures(rows=0, written=0, replaced=0)


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
    checks: tuple[str, ...]  # the rules that held for every written row
    # Per partition; partitions the refresh left empty are absent (see `figures`).
    by_partition: Mapping[TenantDay, PartitionFigures]

    def figures(self, partition: TenantDay) -> PartitionFigures:
        """The partition's figures (EMPTY for a partition the refresh left empty)."""
        return self.by_partition.get(partition, EMPTY)


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
    locks = [f"{rollup.name}/{t}" for t in {w.tenant_id for w in windows}]
    try:
        with olap.transaction(
            lock_keys=locks, isolation_level="REPEATABLE READ" if same_db else "READ COMMITTED"
        ) as conn:
            conn.execute(sa.select(sa.func.set_config(RUN_ID_SETTING, run_id or "", True)))
            prefer_hash_aggregation(conn)
            deleted = delete_partitions(rollup, params, conn)
            if same_db:
                appended, expected = _land_and_count(rollup, params, conn, oltp)
            else:
                with oltp.read_snapshot() as src:
                    prefer_hash_aggregation(src)
                    appended = copy_across(rollup, params, src_conn=src, olap_conn=conn)
                    expected = oltp_counts(src, rollup, params)
            checks = check_invariants(conn, rollup, params)
            rows = partition_totals(conn, rollup, params)
            checks += check_reconciliation(rollup, expected, rows)
    except DataQualityError:
        raise
    except sa.exc.DBAPIError as exc:
        transient = is_transient(exc)
        raise (TransientRollupError if transient else RollupError)(
            f"{rollup.name}: refreshing {len(partitions)} partition(s) "
            f"({_describe(windows)}) failed in the database; the previous rows are unchanged. "
            f"Cause: {type(exc.orig).__name__}: {str(exc.orig).strip()}"
            + (" (transient: will be retried)" if transient else "")
            + (f". Fix: {fix}" if (fix := permanent_connection_fix(exc)) else "")
        ) from exc
    by_partition = {
        TenantDay(tenant, day): PartitionFigures(
            rows=n,
            # Replace mode deleted the partition first, so all its rows are this refresh's.
            written=n if appended is None else appended.get((tenant, day), 0),
            replaced=deleted.get((tenant, day), 0),
        )
        for (tenant, day), (n, _measure) in rows.items()
    }
    for (tenant, day), n in deleted.items():
        # Partitions whose rows all went away (the OLTP rows were deleted or moved).
        by_partition.setdefault(TenantDay(tenant, day), PartitionFigures(0, 0, n))
    return RefreshResult(
        table=rollup.name,
        partitions=len(partitions),
        windows=len(windows),
        rows_deleted=sum(deleted.values()),
        rows_written=sum(f.written for f in by_partition.values()),
        path=IN_DATABASE if same_db else COPY,
        seconds=time.perf_counter() - started,
        checks=tuple(checks),
        by_partition=by_partition,
    )


def _land_and_count(
    rollup: Rollup, params: Mapping[str, Any], conn: sa.Connection, oltp: OltpDatabase
) -> tuple[Counts | None, Counts | None]:
    """Land the fresh rows and count the source rows, at once, in one snapshot.

    The reconciliation's count is a second scan of the source, as long as the rollup's own on
    the largest tables: it runs on a connection of its own, in this transaction's snapshot
    (exported, imported), while this connection lands the rows, so it costs no wall time where
    a core is free, and reads exactly what the rollup reads.
    """
    if rollup.reconciliation is None:
        return land_in_database(rollup, params, conn), None
    snapshot = conn.execute(sa.select(sa.func.pg_export_snapshot())).scalar_one()

    def count() -> Counts | None:
        with oltp.read_snapshot(snapshot) as src:
            return oltp_counts(src, rollup, params)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile") as pool:
        counting = pool.submit(count)
        appended = land_in_database(rollup, params, conn)
        return appended, counting.result()


def _describe(windows: Sequence[TenantWindow]) -> str:
    shown = "; ".join(w.label() for w in windows[:3])
    return shown + (f"; +{len(windows) - 3} more" if len(windows) > 3 else "")
