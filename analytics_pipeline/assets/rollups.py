"""One partitioned asset per rollup definition, built by a single factory."""

import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from analytics_pipeline import telemetry
from analytics_pipeline.assets.catalog import (
    FRESHNESS,
    FRESHNESS_PROMISE,
    rollup_code,
    rollup_columns,
)
from analytics_pipeline.assets.preview import preview
from analytics_pipeline.assets.sources import OWNER, source_key
from analytics_pipeline.errors import DataQualityError, RollupError, TransientError
from analytics_pipeline.instance.partition_metadata import add_partition_metadata
from analytics_pipeline.names import table_key
from analytics_pipeline.partitions import (
    MAX_PARTITIONS_PER_RUN,
    TenantDay,
    parse_partition_key,
    tenant_daily_partitions,
    to_windows,
)
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.checks import INVARIANTS_CHECK, RECONCILIATION_CHECK
from analytics_pipeline.rollups.engine import PartitionFigures, RefreshResult, refresh
from analytics_pipeline.rollups.schema import SCHEMA
from analytics_pipeline.rollups.spec import Rollup, WriteMode

# Caps how many steps read OLTP at once, across all runs (see dagster.yaml and docs/OPERATIONS.md).
OLTP_POOL = "oltp"
MAX_RETRIES = 3
RETRY_BASE_SECONDS = 5  # waits 5, 10, 20 s


def rollup_key(rollup: Rollup) -> dg.AssetKey:
    """The asset key of `rollup`'s table (see names.py)."""
    return table_key(rollup.name)


def check_specs(rollup: Rollup) -> list[dg.AssetCheckSpec]:
    """The rules a refresh enforces before it commits, shown in the UI as asset checks.

    The checks are evaluated inside the refresh, per partition, before commit: a violation
    fails the run and keeps the old rows. What Dagster records is one (unpartitioned) result per
    run summarising every partition the run wrote: see docs/ARCHITECTURE.md for why.
    """
    key = rollup_key(rollup)
    specs = []
    if rollup.invariants:
        rules = "; ".join(inv.description for inv in rollup.invariants)
        specs.append(
            dg.AssetCheckSpec(
                INVARIANTS_CHECK, asset=key, description=f"Every written row satisfies: {rules}."
            )
        )
    if rollup.reconciliation is not None:
        column = rollup.reconciliation.column
        what = f"sum of {column}" if column else "row count"
        relation = "at least" if rollup.write_mode == WriteMode.APPEND_ONLY else "equal to"
        specs.append(
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=key,
                description=f"Per partition, the {what} is {relation} the number of OLTP rows it "
                "summarises, counted independently in the same snapshot.",
            )
        )
    return specs


def build_rollup_asset(
    rollup: Rollup, partitions_def: dg.MultiPartitionsDefinition | None = None
) -> dg.AssetsDefinition:
    """The asset that keeps `analytics.<table>` equal to its SELECT over OLTP, per partition.

    `partitions_def`: the (tenant, date) partitions (default: dates from the start in force now).
    """
    # BackfillPolicy is marked beta in Dagster 1.13 but is the documented way to bound a
    # backfill's runs; we pin Dagster, so the warning tells users nothing they can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")
        return _build(rollup, partitions_def or tenant_daily_partitions())


def _build(rollup: Rollup, partitions_def: dg.MultiPartitionsDefinition) -> dg.AssetsDefinition:
    specs = check_specs(rollup)

    @dg.asset(
        key=rollup_key(rollup),
        description=rollup.description,
        group_name=rollup.group,
        partitions_def=partitions_def,
        # A backfill of many partitions becomes a few runs, each computing its rectangle of
        # tenants x days in one statement: at most MAX_PARTITIONS_PER_RUN partitions per run, as
        # `analytics-pipeline backfill` cuts them (the rectangles: instance/backfill_runs.py).
        backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
        deps=[source_key(t) for t in rollup.sources],
        kinds={"postgres", "sql"},
        owners=[OWNER],
        pool=OLTP_POOL,
        check_specs=specs,
        # The promise of the schedules, judged by Dagster's freshness daemon (assets/catalog.py).
        freshness_policy=FRESHNESS,
        metadata={
            "dagster/table_name": f"olap.{SCHEMA}.{rollup.name}",
            **rollup_columns(rollup),
            **rollup_code(rollup),
            "write_mode": rollup.write_mode.value,
            "retention": rollup.retention.describe(),  # type: ignore[union-attr]
            "freshness": FRESHNESS_PROMISE,
        },
        tags={"layer": "olap"},
    )
    def _asset(
        context: dg.AssetExecutionContext,
        oltp: OltpDatabase,
        olap: OlapDatabase,
        tracking: EventTrackingResource,
    ) -> Iterator[dg.MaterializeResult[Any] | dg.AssetCheckResult]:
        keys = {key: parse_partition_key(key) for key in context.partition_keys}
        partitions = sorted(set(keys.values()))
        try:
            result = refresh_reported(context, rollup, partitions, oltp, olap, tracking)
        except DataQualityError as exc:
            yield dg.AssetCheckResult(**failed_check(exc, partitions))
            raise
        # Each partition's materialization carries its own figures only (Dagster would copy a
        # MaterializeResult's metadata onto every partition of the run); what concerns the run
        # as a whole is recorded once, as an observation of the asset (docs/PERFORMANCE.md).
        add_partition_metadata(
            context,
            rollup_key(rollup),
            {key: partition_metadata(result.figures(p)) for key, p in keys.items()},
        )
        context.log_event(run_summary(rollup, result, partitions, olap))
        yield dg.MaterializeResult()
        for passed in passed_checks(rollup, result):
            yield dg.AssetCheckResult(**passed)

    return _asset


def refresh_reported(
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    rollup: Rollup,
    partitions: Sequence[TenantDay],
    oltp: OltpDatabase,
    olap: OlapDatabase,
    tracking: EventTrackingResource,
) -> RefreshResult:
    """`refresh`, as every step that refreshes a table runs it: its telemetry sent whether it
    succeeds or fails, a transient failure retried with exponential backoff (RetryRequested,
    MAX_RETRIES times), any other failure raised as is."""
    run_id = context.run.run_id
    started = time.monotonic()
    try:
        result = refresh(rollup, partitions, oltp=oltp, olap=olap, run_id=run_id)
    except RollupError as exc:
        try:
            _telemetry(tracking, rollup, partitions, run_id, oltp, olap, started=started)
        except Exception:
            # Never hide the refresh's own error behind a telemetry problem.
            context.log.exception("could not report the failed refresh's telemetry")
        if isinstance(exc, TransientError):
            # Exponential backoff; after MAX_RETRIES the run fails with the last error.
            raise dg.RetryRequested(
                max_retries=MAX_RETRIES,
                seconds_to_wait=RETRY_BASE_SECONDS * 2**context.retry_number,
            ) from exc
        raise
    context.log.info(
        f"{rollup.name}: {result.partitions} partition(s) in {result.windows} window(s): "
        f"deleted {result.rows_deleted} row(s), wrote {result.rows_written} "
        f"({result.path}) in {result.seconds:.2f}s"
    )
    _telemetry(tracking, rollup, partitions, run_id, oltp, olap, result=result)
    return result


def failed_check(exc: DataQualityError, partitions: Sequence[TenantDay]) -> dict[str, Any]:
    """The failed check's fields (an AssetCheckResult's, an AssetCheckEvaluation's): the rule,
    the partition that broke it, the run's size."""
    return {
        "check_name": exc.check_name,
        "passed": False,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": str(exc),
        "metadata": {
            "rule": exc.rule,
            "tenant": exc.tenant,
            "date": str(exc.date),
            "partitions_in_run": len(partitions),
        },
    }


def run_summary(
    rollup: Rollup, result: RefreshResult, partitions: Sequence[TenantDay], olap: OlapDatabase
) -> dg.AssetObservation:
    """The run's figures, preview included, recorded once per run as an observation."""
    return dg.AssetObservation(
        asset_key=rollup_key(rollup),
        description=f"Run summary: {result.partitions} partition(s), {covered(partitions)}",
        metadata=run_metadata(result, partitions, preview(rollup, olap, partitions[0])),
    )


def passed_checks(rollup: Rollup, result: RefreshResult) -> list[dict[str, Any]]:
    """The fields of each of the table's checks passing for the run's partitions."""
    return [
        {
            "check_name": spec.name,
            "passed": True,
            "metadata": {
                "partitions_checked": result.partitions,
                "rules": ", ".join(check_rules(rollup, spec.name)),
            },
        }
        for spec in check_specs(rollup)
    ]


def covered(partitions: Sequence[TenantDay], limit: int = 5) -> str:
    """The run's partitions as per-tenant date ranges: "tenant-001 2026-03-01..2026-03-31"."""
    spans = [w.label() for w in to_windows(partitions)]
    if len(spans) > limit:
        spans = [*spans[:limit], f"... {len(spans) - limit} more tenant range(s)"]
    return "; ".join(spans)


def _telemetry(
    tracking: EventTrackingResource,
    rollup: Rollup,
    partitions: Sequence[TenantDay],
    run_id: str,
    oltp: OltpDatabase,
    olap: OlapDatabase,
    *,
    result: RefreshResult | None = None,
    started: float | None = None,
) -> None:
    """infra_latency and pool state for this step, flushed before the step ends: Dagster may
    run each step in its own process, whose exit would take queued events with it."""
    tracker = tracking.tracker
    seconds = None if started is None else time.monotonic() - started
    telemetry.rollup_latency(
        tracker, rollup.name, partitions, run_id, result=result, seconds=seconds
    )
    tenants = {p.tenant_id for p in partitions}
    telemetry.pool_metrics(tracker, "oltp", oltp.engine, run_id, tenants)
    telemetry.pool_metrics(tracker, "olap", olap.engine, run_id, tenants)
    tracking.flush()


def check_rules(rollup: Rollup, check_name: str) -> list[str]:
    """The rules one asset check stands for (each check lists only its own)."""
    if check_name == INVARIANTS_CHECK:
        return [inv.name for inv in rollup.invariants]
    return [RECONCILIATION_CHECK]


def partition_metadata(figures: PartitionFigures) -> dict[str, dg.MetadataValue]:
    """One partition's own figures: what its materialization shows (a few dozen bytes)."""
    return {
        "dagster/row_count": dg.MetadataValue.int(figures.rows),
        "rows_written": dg.MetadataValue.int(figures.written),
        "rows_replaced": dg.MetadataValue.int(figures.replaced),
    }


def run_metadata(
    result: RefreshResult, partitions: Sequence[TenantDay], sample: dg.MetadataValue
) -> dict[str, dg.MetadataValue]:
    """The run's figures, recorded once per run (not on each partition)."""
    return {
        "partitions": dg.MetadataValue.int(result.partitions),
        "covered": dg.MetadataValue.text(covered(partitions)),
        "run_rows_written": dg.MetadataValue.int(result.rows_written),
        "run_rows_replaced": dg.MetadataValue.int(result.rows_deleted),
        "windows": dg.MetadataValue.int(result.windows),
        "path": dg.MetadataValue.text(result.path),
        "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
        "preview": sample,
        "preview_partition": dg.MetadataValue.text(
            f"{partitions[0].tenant_id} {partitions[0].day.isoformat()}"
        ),
    }
