"""Sensors: new tenants, late-arriving OLTP changes, and failed runs."""

import datetime as dt
import json
import os

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline import telemetry
from analytics_pipeline.automation.changes import affected_since, database_now, feeds
from analytics_pipeline.automation.planning import PlannedRun, plan_runs, run_tenant
from analytics_pipeline.partitions import (
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    daily_partitions,
    split_tenant_ids,
    tenant_partitions,
)
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.sources.schema import NO_TABLES_YET, oltp_schema_exists
from analytics_pipeline.sources.tables import tenants

ALL_ROLLUPS = tuple(r.name for r in REGISTRY)
ROLLUP_SELECTION = dg.AssetSelection.assets(*(dg.AssetKey(["analytics", n]) for n in ALL_ROLLUPS))

# Tuning, overridable by environment variable (documented in docs/OPERATIONS.md).
NEW_TENANTS_PER_TICK = int(os.environ.get("ANALYTICS_NEW_TENANTS_PER_TICK", "25"))
LATE_DATA_LAG_SECONDS = float(os.environ.get("ANALYTICS_LATE_DATA_LAG_SECONDS", "10"))
LATE_DATA_MAX_RUNS = int(os.environ.get("ANALYTICS_LATE_DATA_MAX_RUNS", "10"))


def _first_day() -> dt.date:
    return daily_partitions.start.date()


@dg.sensor(
    name="tenant_sensor",
    minimum_interval_seconds=60,
    target=ROLLUP_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers OLTP tenants as partitions (at most ANALYTICS_NEW_TENANTS_PER_TICK a tick, "
        "oldest first) and requests each new tenant's initial build, from the day it was "
        "created to today. Ids that cannot be partition keys are reported once and skipped. "
        "Offboarded tenants are never added; once added, a tenant stays (history is kept)."
    ),
)
def tenant_sensor(
    context: dg.SensorEvaluationContext, oltp: OltpDatabase
) -> dg.SensorResult | dg.SkipReason:
    reported = set(json.loads(context.cursor or "{}").get("reported_invalid", []))
    with oltp.read_snapshot() as conn:
        if not oltp_schema_exists(conn):
            return dg.SkipReason(NO_TABLES_YET)
        rows = conn.execute(
            sa.select(tenants.c.id, tenants.c.created_at)
            .where(tenants.c.status != "offboarded")
            .order_by(tenants.c.created_at, tenants.c.id)
        ).all()
        today = database_now(conn).astimezone(dt.UTC).date()
    registered = set(context.instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME))
    created = {tenant_id: created_at for tenant_id, created_at in rows}
    valid, invalid = split_tenant_ids(t for t in created if t not in registered)
    for tenant_id, why in invalid.items():
        if tenant_id not in reported:
            context.log.warning(why)
            reported.add(tenant_id)
    new = [(t, max(created[t].astimezone(dt.UTC).date(), _first_day())) for t in valid]
    batch = new[:NEW_TENANTS_PER_TICK]
    runs = [
        PlannedRun(ALL_ROLLUPS, TenantDay(t, min(start, today)), TenantDay(t, today)).request(
            "new-tenant", run_key=f"new-tenant-{t}"
        )
        for t, start in batch
    ]
    if len(new) > len(batch):
        context.log.info(f"{len(new) - len(batch)} more new tenant(s) wait for the next ticks")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=(
            [tenant_partitions.build_add_request([t for t, _ in batch])] if batch else []
        ),
        cursor=json.dumps({"reported_invalid": sorted(reported)}),
    )


@dg.sensor(
    name="late_data_sensor",
    minimum_interval_seconds=15,
    target=ROLLUP_SELECTION,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Finds the (tenant, date) partitions whose OLTP rows changed since the last tick "
        "(updated_at watermarks per source; recorded_at for admin_actions) and requests range "
        "runs of exactly the affected tables: one per tenant, or one over the bounding "
        "rectangle when many tenants changed. The watermark trails the database clock by "
        "ANALYTICS_LATE_DATA_LAG_SECONDS so in-flight transactions are not skipped, and it only "
        "advances in a tick that requested its runs."
    ),
)
def late_data_sensor(context: dg.SensorEvaluationContext, oltp: OltpDatabase) -> dg.SensorResult:
    watermarks = {
        k: dt.datetime.fromisoformat(v) for k, v in json.loads(context.cursor or "{}").items()
    }
    keys = [f"{source}.{col}" for source, col in feeds(REGISTRY)]
    with oltp.read_snapshot() as conn:
        now = database_now(conn)
        upto = now - dt.timedelta(seconds=LATE_DATA_LAG_SECONDS)
        if not watermarks:
            # First tick: start watching from now (not now - lag: rows a demo or a bulk load
            # wrote seconds ago would come back as "late" on the next tick and be recomputed).
            # History is built by the tenant sensor, the schedules, or a backfill.
            return dg.SensorResult(
                skip_reason="started watching OLTP changes",
                cursor=json.dumps({k: now.isoformat() for k in keys}),
            )
        affected = affected_since(conn, REGISTRY, watermarks, upto, default_after=upto)
    runs = plan_runs(
        affected,
        context.instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME),
        first_day=_first_day(),
        last_day=upto.astimezone(dt.UTC).date(),
        max_runs=LATE_DATA_MAX_RUNS,
    )
    changed = sum(len(p) for p in affected.values())
    context.log.info(f"{changed} changed (table, tenant, date) partition(s) -> {len(runs)} run(s)")
    return dg.SensorResult(
        run_requests=[r.request("late-data") for r in runs],
        cursor=json.dumps({k: max(upto, watermarks.get(k, upto)).isoformat() for k in keys}),
    )


@dg.run_failure_sensor(
    name="run_failure_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Reports every failed run of this code location: logs its error and sends "
    "infra_error_rate (with the run's tenant as a PostHog group) through the event tracker.",
)
def run_failure_sensor(
    context: dg.RunFailureSensorContext, tracking: EventTrackingResource
) -> None:
    run = context.dagster_run
    event = context.failure_event
    message = event.message if event else "unknown error"
    error = event.event_specific_data.error if event and event.event_specific_data else None
    # Dagster wraps the user's exception; its root cause is the useful error type.
    while error is not None and error.cause is not None:
        error = error.cause
    context.log.error(f"run {run.run_id} ({run.job_name}, tags {dict(run.tags)}) failed: {message}")
    telemetry.run_failed(
        tracking.tracker,
        job_name=run.job_name,
        run_id=run.run_id,
        error_type=error.cls_name if error is not None and error.cls_name else "RunFailure",
        tenant_id=run_tenant(run.tags),
    )
    tracking.flush()
