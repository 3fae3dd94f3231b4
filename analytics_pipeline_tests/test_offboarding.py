"""Offboarding without erasure: the tenant's partitions stay, nothing refreshes them.

Why: an offboarded customer's history must stay readable (until it is erased), but refreshing it
is wasted work and, worse, keeps a departed customer's data moving. The schedules and the
late-data sensor must leave it out, even inside a multi-tenant range, and the tenant sensor must
say so once, not every minute.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from analytics_pipeline.automation import schedules, sensors
from analytics_pipeline.automation.planning import plan_refresh
from analytics_pipeline.partitions import (
    OFFBOARDED_PARTITIONS_NAME,
    TENANTS_PARTITIONS_NAME,
    add_tenants,
)
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline_tests.testbed import END, START, TEST_SIZE, evaluate_sensor, run_sql


def _apply_all(inst: dg.DagsterInstance, result: dg.SensorResult) -> None:
    for req in result.dynamic_partitions_requests or []:
        if isinstance(req, dg.DeleteDynamicPartitionsRequest):
            for key in req.partition_keys:
                inst.delete_dynamic_partition(req.partitions_def_name, key)
        else:
            inst.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


def test_offboarded_tenant_is_kept_reported_once_and_never_refreshed(
    clean_instance,
    oltp_url,
):
    for key in clean_instance.get_dynamic_partitions(OFFBOARDED_PARTITIONS_NAME):
        clean_instance.delete_dynamic_partition(OFFBOARDED_PARTITIONS_NAME, key)
    add_tenants(clean_instance, TEST_SIZE.tenant_ids())  # tenant-001..003, in that order
    run_sql(oltp_url, "UPDATE tenants SET status = 'offboarded' WHERE id = 'tenant-002'")

    tenant_sensor = sensors.build_tenant_sensor(AutomationSettings())
    first = evaluate_sensor(tenant_sensor, clean_instance, oltp_url)
    assert [
        (type(r).__name__, r.partitions_def_name, list(r.partition_keys))
        for r in first.dynamic_partitions_requests
    ] == [("AddDynamicPartitionsRequest", OFFBOARDED_PARTITIONS_NAME, ["tenant-002"])]
    assert first.run_requests == []
    _apply_all(clean_instance, first)
    # Reported once: the next tick has nothing to say.
    second = evaluate_sensor(tenant_sensor, clean_instance, oltp_url, first.cursor)
    assert second.dynamic_partitions_requests == [] and second.run_requests == []
    # Still readable: the partition is still registered.
    assert "tenant-002" in clean_instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)

    daily_refresh, _ = schedules.build_refresh_schedules(AutomationSettings(tenants_per_run=250))
    when = dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC)
    ctx = dg.build_schedule_context(instance=clean_instance, scheduled_execution_time=when)
    runs = daily_refresh(ctx)
    assert [(r.tags[START], r.tags[END]) for r in runs] == [
        ("2026-03-09|tenant-001", "2026-03-09|tenant-001"),
        ("2026-03-09|tenant-003", "2026-03-09|tenant-003"),
    ]

    # The late-data sensor leaves it out of per-tenant runs and of a burst's rectangle.
    run_sql(oltp_url, "UPDATE emails SET opened = now() WHERE sent_at::date = '2026-03-20'")
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    start = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    run_sql(oltp_url, "UPDATE emails SET opened = now() WHERE sent_at::date = '2026-03-21'")
    late = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, start.cursor)
    assert sorted(r.tags["analytics/tenant"] for r in late.run_requests) == [
        "tenant-001",
        "tenant-003",
    ]
    affected = {"campaign_analytics": {(t, dt.date(2026, 3, 21)) for t in TEST_SIZE.tenant_ids()}}
    order = clean_instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    burst = plan_refresh(
        affected,
        order,
        first_day=dt.date(2026, 1, 1),
        last_day=dt.date(2026, 3, 31),
        max_runs=1,
        exclude={"tenant-002"},
    )
    assert [(r.first.tenant_id, r.last.tenant_id) for r in burst] == [
        ("tenant-001", "tenant-001"),
        ("tenant-003", "tenant-003"),
    ]

    # Reactivated: reported once, and refreshed again.
    run_sql(oltp_url, "UPDATE tenants SET status = 'active' WHERE id = 'tenant-002'")
    back = evaluate_sensor(tenant_sensor, clean_instance, oltp_url, second.cursor)
    assert [
        (type(r).__name__, list(r.partition_keys)) for r in back.dynamic_partitions_requests
    ] == [("DeleteDynamicPartitionsRequest", ["tenant-002"])]
    _apply_all(clean_instance, back)
    ctx = dg.build_schedule_context(instance=clean_instance, scheduled_execution_time=when)
    assert [(r.tags[START], r.tags[END]) for r in daily_refresh(ctx)] == [
        ("2026-03-09|tenant-001", "2026-03-09|tenant-003")
    ]
