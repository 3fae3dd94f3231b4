"""Retention: deleting partitions older than each table's declared period, in bounded batches.

Each rollup declares its `retention` (rollups/spec.py). The `enforce_retention` job, started
daily by `retention_schedule`, deletes the expired rows of every OLAP table and the Dagster
history (materialization events, with their previews) of the same partitions. Every batch is
its own short transaction, and a run does at most `max_batches` per table, so a first run on a
long history neither locks a table for long nor bloats one transaction; the next runs go on.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.instance.expired_history import delete_expired_history
from analytics_pipeline.names import table_key
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.tables import REGISTRY


@dataclass(frozen=True)
class Expired:
    table: str
    cutoff: dt.date
    rows_deleted: int
    events_deleted: int


def delete_expired_rows(
    olap: OlapDatabase, rollup: Rollup, cutoff: dt.date, *, batch: int, max_batches: int
) -> int:
    """Delete rows dated before `cutoff`, `batch` at a time, at most `max_batches` batches."""
    t = rollup.table
    # The row's physical address (PostgreSQL's `tid`): no Python type, only compared with itself.
    ctid: sa.ColumnClause[object] = sa.literal_column("ctid")
    victims = sa.select(ctid).select_from(t).where(t.c.date < cutoff).limit(batch)
    total = 0
    for _ in range(max_batches):
        with olap.transaction() as conn:
            n = conn.execute(sa.delete(t).where(ctid.in_(victims))).rowcount
        total += n
        if n < batch:
            break
    return total


def enforce(
    olap: OlapDatabase,
    instance: dg.DagsterInstance,
    today: dt.date,
    *,
    batch: int = 10_000,
    max_batches: int = 100,
) -> list[Expired]:
    """Apply every table's retention as of `today`; return what each table lost."""
    cutoffs = {r.name: r.retention.cutoff(today) for r in REGISTRY if r.retention is not None}
    events = delete_expired_history(
        instance,
        {table_key(name): c.isoformat() for name, c in cutoffs.items()},
        batch=batch,
        max_batches=max_batches,
    )
    return [
        Expired(
            r.name,
            cutoffs[r.name],
            delete_expired_rows(olap, r, cutoffs[r.name], batch=batch, max_batches=max_batches),
            events.get(table_key(r.name).to_user_string(), 0),
        )
        for r in REGISTRY
        if r.name in cutoffs
    ]


class RetentionConfig(dg.Config):
    """Batch sizes of one retention run."""

    batch: int = 10_000  # rows (or Dagster events) per transaction
    max_batches: int = 100  # per table per run; the next run continues


@dg.op(
    description="Delete every OLAP table's partitions older than its retention, and their "
    "Dagster history, in bounded batches."
)
def delete_expired_partitions(
    context: dg.OpExecutionContext, config: RetentionConfig, olap: OlapDatabase
) -> dg.Output[None]:
    today = dt.datetime.now(dt.UTC).date()
    done = enforce(
        olap, context.instance, today, batch=config.batch, max_batches=config.max_batches
    )
    for e in done:
        context.log.info(
            f"{e.table}: kept from {e.cutoff}; deleted {e.rows_deleted} row(s) and "
            f"{e.events_deleted} Dagster event(s)"
        )
    return dg.Output(
        None,
        metadata={f"{e.table}_rows_deleted": e.rows_deleted for e in done}
        | {f"{e.table}_events_deleted": e.events_deleted for e in done},
    )


@dg.job(
    name="enforce_retention",
    description="Deletes expired partitions (rows and Dagster history) per table retention.",
)
def enforce_retention() -> None:
    delete_expired_partitions()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    job=enforce_retention,
    cron_schedule="15 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="03:15 UTC: deletes partitions past each table's retention (asset metadata "
    "`retention`; docs/DATA_DICTIONARY.md), in bounded batches.",
)
