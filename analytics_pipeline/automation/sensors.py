"""Sensors: new tenants, late-arriving OLTP changes, and failed runs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import JobFailureData
from dagster._core.execution.plan.objects import StepFailureData

from analytics_pipeline import telemetry
from analytics_pipeline.assets.exact_refresh import build_exact_refresh_job
from analytics_pipeline.assets.selection import ALL_ROLLUPS, ROLLUP_SELECTION, refresh_analytics_job
from analytics_pipeline.automation.changes import (
    affected_since,
    complete_until,
    database_now,
    feeds,
)
from analytics_pipeline.automation.exact_runs import ExactRun
from analytics_pipeline.automation.planning import PlannedRun, plan_refresh
from analytics_pipeline.history import partitions_start
from analytics_pipeline.names import REFRESH_JOB
from analytics_pipeline.partitions import (
    OFFBOARDED_PARTITIONS_NAME,
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    offboarded_tenants,
    split_tenant_ids,
    tenant_partitions,
)
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.run_tags import run_tenant
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline.sources.schema import NO_TABLES_YET, oltp_schema_exists
from analytics_pipeline.sources.tables import tenants


class ReportedIds:
    """The refused tenant ids already logged, as the tenant sensor's cursor: short hashes, at
    most MAX_REPORTED of them (the newest kept), never the ids themselves, so the cursor stays
    small however many bad ids OLTP holds. Past the cap, the oldest may be logged once more."""

    MAX_REPORTED = 2000

    def __init__(self, digests: list[str]) -> None:
        self._digests = dict.fromkeys(digests[-self.MAX_REPORTED :])

    @staticmethod
    def _digest(tenant_id: str) -> str:
        return hashlib.sha256(tenant_id.encode()).hexdigest()[:16]

    @classmethod
    def from_cursor(cls, cursor: str | None) -> ReportedIds:
        data = json.loads(cursor or "{}")
        # "reported_invalid" (the ids verbatim) is the older cursor's form.
        return cls(
            [cls._digest(t) for t in data.get("reported_invalid", [])]
            + list(data.get("reported_invalid_sha256", []))
        )

    def add(self, tenant_id: str) -> bool:
        """Remember `tenant_id`; True if it was not reported before (log it now)."""
        digest = self._digest(tenant_id)
        if digest in self._digests:
            return False
        self._digests[digest] = None
        while len(self._digests) > self.MAX_REPORTED:
            del self._digests[next(iter(self._digests))]
        return True

    def __contains__(self, tenant_id: str) -> bool:
        return self._digest(tenant_id) in self._digests

    def to_cursor(self) -> str:
        return json.dumps({"reported_invalid_sha256": list(self._digests)})


def build_tenant_sensor(
    automation: AutomationSettings, first_day: dt.date | None = None
) -> dg.SensorDefinition:
    """The tenant sensor, registering at most `automation.new_tenants_per_tick` a tick.

    A new tenant's initial build starts at its creation day, or at `first_day` (the date
    dimension's start, default: the start in force when the sensor is built) if that is later.
    """
    per_tick = automation.new_tenants_per_tick
    start = first_day or partitions_start()

    @dg.sensor(
        name="tenant_sensor",
        minimum_interval_seconds=60,
        target=ROLLUP_SELECTION,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Registers OLTP tenants as partitions (at most ANALYTICS_NEW_TENANTS_PER_TICK a tick, "
            "oldest first) and requests each new tenant's initial build, from the day it was "
            "created to today. Ids that cannot be partition keys are reported once and skipped. "
            "Offboarded tenants are never added; a registered tenant that becomes offboarded is "
            "reported once and no longer refreshed (its partitions stay readable), until it is "
            "reactivated or erased (analytics-pipeline tenant erase)."
        ),
    )
    def tenant_sensor(
        context: dg.SensorEvaluationContext, oltp: OltpDatabase
    ) -> dg.SensorResult | dg.SkipReason:
        reported = ReportedIds.from_cursor(context.cursor)
        with oltp.read_snapshot() as conn:
            if not oltp_schema_exists(conn):
                return dg.SkipReason(NO_TABLES_YET)
            rows = conn.execute(
                sa.select(tenants.c.id, tenants.c.created_at, tenants.c.status).order_by(
                    tenants.c.created_at, tenants.c.id
                )
            ).all()
            today = database_now(conn).astimezone(dt.UTC).date()
        registered = set(context.instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME))
        offboarded = {t for t, _, status in rows if status == "offboarded"}
        created = {t: created_at for t, created_at, status in rows if status != "offboarded"}
        valid, invalid = split_tenant_ids(t for t in created if t not in registered)
        for tenant_id, why in invalid.items():
            if reported.add(tenant_id):
                context.log.warning(why)
        new = [(t, max(created[t].astimezone(dt.UTC).date(), start)) for t in valid]
        batch = new[:per_tick]
        runs = [
            PlannedRun(ALL_ROLLUPS, TenantDay(t, min(start, today)), TenantDay(t, today)).request(
                "new-tenant", run_key=f"new-tenant-{t}"
            )
            for t, start in batch
        ]
        if len(new) > len(batch):
            context.log.info(f"{len(new) - len(batch)} more new tenant(s) wait for the next ticks")
        requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
        if batch:
            requests.append(tenant_partitions.build_add_request([t for t, _ in batch]))
        requests += offboarding_requests(context, registered, offboarded)
        return dg.SensorResult(
            run_requests=runs,
            dynamic_partitions_requests=requests,
            cursor=reported.to_cursor(),
        )

    return tenant_sensor


def offboarding_requests(
    context: dg.SensorEvaluationContext, registered: set[str], offboarded: set[str]
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """Keep the instance's set of offboarded tenants in step with OLTP; log each change once.

    The set itself is the memory: a tenant is reported when it enters or leaves it.
    """
    known = set(context.instance.get_dynamic_partitions(OFFBOARDED_PARTITIONS_NAME))
    gone = sorted((offboarded & registered) - known)
    back = sorted(known - offboarded)
    for t in gone:
        context.log.warning(
            f"tenant {t!r} is offboarded in OLTP: its partitions stay readable and are no "
            "longer refreshed by any schedule or sensor. To forget it: analytics-pipeline "
            f"tenant erase {t}"
        )
    for t in back:
        context.log.info(f"tenant {t!r} is no longer offboarded: refreshes resume")
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if gone:
        requests.append(offboarded_tenants.build_add_request(gone))
    if back:
        requests.append(offboarded_tenants.build_delete_request(back))
    return requests


def build_late_data_sensor(
    automation: AutomationSettings,
    first_day: dt.date | None = None,
    exact_job: dg.JobDefinition | None = None,
) -> dg.SensorDefinition:
    """The late-data sensor: its watermark trails the database clock by
    `automation.late_data_lag_seconds`; at most `automation.late_data_max_runs` range runs a
    tick, plus exact-refresh runs (`exact_job`, default: built for `first_day`) for changes too
    scattered for ranges. Changes before `first_day` (the date dimension's start, as in the
    tenant sensor) have no partition to refresh."""
    start = first_day or partitions_start()
    exact = exact_job or build_exact_refresh_job(start)
    lag = dt.timedelta(seconds=automation.late_data_lag_seconds)
    max_runs = automation.late_data_max_runs

    @dg.sensor(
        name="late_data_sensor",
        minimum_interval_seconds=15,
        jobs=[refresh_analytics_job, exact],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Finds the (tenant, date) partitions whose OLTP rows changed since the last tick "
            "(updated_at watermarks per source; recorded_at for admin_actions) and requests "
            "range runs of exactly the affected tables, rectangles of tenants x days that "
            "refresh at most twice the partitions that changed; changes too scattered for that "
            "go to refresh_exact_partitions runs, which refresh exactly them. The watermark "
            "trails the database clock by ANALYTICS_LATE_DATA_LAG_SECONDS so in-flight "
            "transactions are not skipped, and it only advances in a tick that requested its "
            "runs. On a hot standby the clock is the replay position's time "
            "(pg_last_xact_replay_timestamp()), so replication lag is never skipped."
        ),
    )
    def late_data_sensor(
        context: dg.SensorEvaluationContext, oltp: OltpDatabase
    ) -> dg.SensorResult:
        watermarks = {
            k: dt.datetime.fromisoformat(v) for k, v in json.loads(context.cursor or "{}").items()
        }
        keys = [f"{source}.{col}" for source, col in feeds(REGISTRY)]
        with oltp.read_snapshot() as conn:
            now = complete_until(conn)
            if now is None:
                return dg.SensorResult(skip_reason="the OLTP standby has replayed nothing yet")
            upto = now - lag
            if not watermarks:
                # First tick: start watching from now (not now - lag: rows a demo or a bulk load
                # wrote seconds ago would come back as "late" on the next tick and be recomputed).
                # History is built by the tenant sensor, the schedules, or a backfill.
                return dg.SensorResult(
                    skip_reason="started watching OLTP changes",
                    cursor=json.dumps({k: now.isoformat() for k in keys}),
                )
            affected = affected_since(conn, REGISTRY, watermarks, upto, default_after=upto)
        runs = plan_refresh(
            affected,
            list(context.instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)),
            first_day=start,
            last_day=upto.astimezone(dt.UTC).date(),
            max_runs=max_runs,
            exclude=set(context.instance.get_dynamic_partitions(OFFBOARDED_PARTITIONS_NAME)),
        )
        changed = sum(len(p) for p in affected.values())
        exact_runs = [r for r in runs if isinstance(r, ExactRun)]
        context.log.info(
            f"{changed} changed (table, tenant, date) partition(s) -> {len(runs)} run(s)"
            + (
                f", {len(exact_runs)} of them exact ({sum(r.size for r in exact_runs)} "
                "partition(s) too scattered for a range)"
                if exact_runs
                else ""
            )
        )
        return dg.SensorResult(
            run_requests=[
                r.request("late-data")
                if isinstance(r, ExactRun)
                else r.request("late-data", job_name=REFRESH_JOB)
                for r in runs
            ],
            cursor=json.dumps({k: max(upto, watermarks.get(k, upto)).isoformat() for k in keys}),
        )

    return late_data_sensor


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
    data = event.event_specific_data if event else None
    error = data.error if isinstance(data, StepFailureData | JobFailureData) else None
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
