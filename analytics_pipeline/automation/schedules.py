"""Schedules: yesterday's final figures after UTC midnight, and today's every half hour.

Each tick makes one range run per block of ANALYTICS_TENANTS_PER_RUN registered tenants (in the
order they were registered), for every table: 500 tenants are 2 runs, not 500. Offboarded
tenants (kept by the tenant sensor) are left out: their partitions stay as they are.
"""

import datetime as dt
import os

import dagster as dg

from analytics_pipeline.assets.selection import ALL_ROLLUPS, ROLLUP_SELECTION
from analytics_pipeline.automation.planning import PlannedRun, tenant_blocks
from analytics_pipeline.partitions import (
    OFFBOARDED_PARTITIONS_NAME,
    TENANTS_PARTITIONS_NAME,
    TenantDay,
)

TENANTS_PER_RUN = int(os.environ.get("ANALYTICS_TENANTS_PER_RUN", "250"))


def day_runs(instance: dg.DagsterInstance, day: dt.date, reason: str) -> list[dg.RunRequest]:
    tenants = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    offboarded = set(instance.get_dynamic_partitions(OFFBOARDED_PARTITIONS_NAME))
    return [
        PlannedRun(ALL_ROLLUPS, TenantDay(first, day), TenantDay(last, day)).request(
            reason, run_key=f"{reason}-{day}-{i}"
        )
        for i, (first, last) in enumerate(tenant_blocks(tenants, TENANTS_PER_RUN, offboarded))
    ]


@dg.schedule(
    name="daily_refresh",
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    target=ROLLUP_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:30 UTC: yesterday's partitions of every table for every tenant.",
)
def daily_refresh(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(dt.UTC).date() - dt.timedelta(days=1)
    return day_runs(context.instance, day, "daily") or dg.SkipReason("no tenants registered")


@dg.schedule(
    name="intraday_refresh",
    cron_schedule="*/30 * * * *",
    execution_timezone="UTC",
    target=ROLLUP_SELECTION,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every 30 minutes: today's partitions of every table for every tenant, so "
    "dashboards are never more than half an hour (plus the run) behind.",
)
def intraday_refresh(context: dg.ScheduleEvaluationContext):
    time = context.scheduled_execution_time.astimezone(dt.UTC)
    runs = day_runs(context.instance, time.date(), "intraday")
    # One run key per half hour, not per day.
    return [
        dg.RunRequest(
            run_key=f"{r.run_key}-{time:%H%M}", asset_selection=r.asset_selection, tags=r.tags
        )
        for r in runs
    ] or dg.SkipReason("no tenants registered")
