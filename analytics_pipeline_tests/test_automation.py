"""Sensors and schedules evaluated against real PostgreSQL (OLTP and the Dagster instance).

Why: they decide what gets refreshed without anyone clicking. A new tenant must get its
partitions and initial build (and a bad id none); a late change must lead to a refresh of exactly
the affected tables and days, in few runs, without ever being skipped or endlessly repeated.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.automation import schedules, sensors
from analytics_pipeline.errors import TransientError
from analytics_pipeline.partitions import TENANTS_PARTITIONS_NAME, add_tenants
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline_tests.testbed import (
    END,
    START,
    TEST_SIZE,
    evaluate_sensor,
    olap_rows,
    run_sql,
)


def _apply_partitions(instance, result: dg.SensorResult) -> None:
    for req in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


def test_tenant_sensor_adds_in_capped_batches_and_skips_bad_ids(clean_instance, oltp_url):
    tenant_sensor = sensors.build_tenant_sensor(AutomationSettings(new_tenants_per_tick=2))
    run_sql(
        oltp_url,
        "INSERT INTO tenants (id, name, status, created_at) VALUES "
        "('bad|id', 'Bad', 'active', '2026-03-01'), "
        "('gone', 'Gone', 'offboarded', '2026-03-01'), "
        "('fresh-co', 'Fresh', 'active', '2026-03-30 12:00+00')",
    )
    first = evaluate_sensor(tenant_sensor, clean_instance, oltp_url)
    added = [k for r in first.dynamic_partitions_requests for k in r.partition_keys]
    assert len(added) == 2
    assert [r.tags["analytics/tenant"] for r in first.run_requests] == added
    # Remembered (so it is logged once), but not verbatim: the cursor holds a short hash.
    assert len(json.loads(first.cursor)["reported_invalid_sha256"]) == 1
    assert "bad|id" not in first.cursor
    _apply_partitions(clean_instance, first)
    ticks = [first]
    while ticks[-1].dynamic_partitions_requests:
        ticks.append(evaluate_sensor(tenant_sensor, clean_instance, oltp_url, ticks[-1].cursor))
        _apply_partitions(clean_instance, ticks[-1])
    registered = clean_instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    assert sorted(registered) == sorted([*TEST_SIZE.tenant_ids(), "fresh-co"])
    fresh = next(
        r for t in ticks for r in t.run_requests if r.tags["analytics/tenant"] == "fresh-co"
    )
    # The initial build covers the tenant's life: from its creation day to today.
    assert fresh.tags[START].startswith("2026-03-30|")
    assert fresh.tags[END] == f"{dt.datetime.now(dt.UTC).date()}|fresh-co"
    assert fresh.run_key == "new-tenant-fresh-co"


def test_late_data_sensor_requests_exactly_the_changed_tables_and_days(clean_instance, oltp_url):
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    first = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    assert first.run_requests == [] and first.skip_reason
    nothing = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, first.cursor)
    assert nothing.run_requests == []
    # Late opens for two old days of one tenant.
    run_sql(
        oltp_url,
        "UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-002' AND opened "
        "IS NULL AND sent_at >= '2026-03-14' AND sent_at < '2026-03-15'",
    )
    run_sql(
        oltp_url,
        "UPDATE emails SET replied = now() WHERE id = (SELECT min(id) FROM emails "
        "WHERE tenant_id = 'tenant-002' AND sent_at >= '2026-03-17' "
        "AND sent_at < '2026-03-18')",
    )
    second = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, nothing.cursor)
    assert len(second.run_requests) == 1
    req = second.run_requests[0]
    assert (req.tags[START], req.tags[END]) == ("2026-03-14|tenant-002", "2026-03-17|tenant-002")
    assert {k.path[-1] for k in req.asset_selection} == {
        "campaign_analytics",
        "sequence_step_analytics",
        "mailbox_analytics",
    }
    # The same changes are not requested again; the cursor moved past them.
    third = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, second.cursor)
    assert third.run_requests == []


def test_rows_loaded_just_before_the_first_tick_are_not_late_data(clean_instance, oltp_url):
    """A demo or bulk load seconds before `dev` starts must not be recomputed as "late" (seen:
    the whole demo re-run by the second tick when the first watermark trailed by the lag)."""
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=30))
    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    run_sql(
        oltp_url,
        "UPDATE emails SET opened = now() - interval '5 seconds' WHERE tenant_id = 'tenant-001' "
        "AND opened IS NULL AND sent_at >= '2026-03-20' AND sent_at < '2026-03-21'",
    )
    first = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    second = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, first.cursor)
    assert second.run_requests == []


def test_a_burst_across_tenants_is_one_run(clean_instance, oltp_url):
    late_data_sensor = sensors.build_late_data_sensor(
        AutomationSettings(late_data_lag_seconds=0, late_data_max_runs=2)
    )
    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    start = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    run_sql(oltp_url, "UPDATE emails SET clicked = now() WHERE id % 7 = 0 AND sent_at IS NOT NULL")
    run_sql(
        oltp_url, "UPDATE invoices SET status = status WHERE issued_at >= :d", d=TEST_SIZE.first_day
    )
    run_sql(
        oltp_url,
        "INSERT INTO admin_actions (tenant_id, actor_id, actor_role, action, "
        "occurred_at) VALUES ('tenant-003', 'a', 'owner', 'late', '2026-03-12 08:00+00')",
    )
    burst = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, start.cursor)
    assert len(burst.run_requests) == 1
    req = burst.run_requests[0]
    assert req.tags[START] == f"{TEST_SIZE.first_day}|tenant-001"
    assert req.tags[END].endswith("|tenant-003")
    assert {k.path[-1] for k in req.asset_selection} == {
        "campaign_analytics",
        "sequence_step_analytics",
        "mailbox_analytics",
        "billing_analytics",
        "admin_audit_log",
    }


def test_changes_of_unregistered_tenants_or_before_partitions_are_left_out(
    clean_instance, oltp_url
):
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    add_tenants(clean_instance, ["tenant-001"])
    start = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    run_sql(oltp_url, "UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-002'")
    tick = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, start.cursor)
    assert tick.run_requests == []


def test_sensor_run_request_refreshes_exactly_its_partitions(clean_instance, oltp_url, monkeypatch):
    """The request is executable as is and moves the late open into OLAP."""
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    from analytics_pipeline.definitions import defs

    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    start = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    run_sql(
        oltp_url,
        "UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-001' AND "
        "opened IS NULL AND sent_at >= '2026-03-20' AND sent_at < '2026-03-21'",
    )
    req = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, start.cursor).run_requests[0]
    result = defs.resolve_job_def("refresh_analytics").execute_in_process(
        instance=clean_instance, tags=req.tags, asset_selection=req.asset_selection
    )
    assert result.success
    engine = sa.create_engine(oltp_url)
    with engine.connect() as conn:
        olap = conn.execute(
            sa.text(
                "SELECT tenant_id, date::text, sum(opened_tracked), sum(sent) "
                "FROM analytics.campaign_analytics GROUP BY 1, 2"
            )
        ).all()
    engine.dispose()
    assert [(t, d) for t, d, _, _ in olap] == [("tenant-001", "2026-03-20")]
    _, _, opened, sent = olap[0]
    assert opened == sent  # every email of that day is now opened


def test_schedules_make_one_run_per_block_of_tenants(clean_instance):
    daily_refresh, intraday_refresh = schedules.build_refresh_schedules(
        AutomationSettings(tenants_per_run=2)
    )
    add_tenants(clean_instance, ["a", "b", "c", "d", "e"])
    when = dt.datetime(2026, 3, 10, 0, 30, tzinfo=dt.UTC)
    ctx = dg.build_schedule_context(instance=clean_instance, scheduled_execution_time=when)
    runs = daily_refresh(ctx)
    assert [(r.tags[START], r.tags[END]) for r in runs] == [
        ("2026-03-09|a", "2026-03-09|b"),
        ("2026-03-09|c", "2026-03-09|d"),
        ("2026-03-09|e", "2026-03-09|e"),
    ]
    assert len({r.run_key for r in runs}) == 3
    ctx = dg.build_schedule_context(instance=clean_instance, scheduled_execution_time=when)
    today = intraday_refresh(ctx)
    assert [r.tags[START] for r in today] == ["2026-03-10|a", "2026-03-10|c", "2026-03-10|e"]
    assert today[0].run_key == "intraday-2026-03-10-0-0030"


def test_backfill_plans_one_run_per_group_per_contiguous_block(clean_instance):
    from analytics_pipeline.automation.backfill import plan_backfill

    add_tenants(clean_instance, ["a", "b", "c", "d"])
    plans = plan_backfill(
        clean_instance,
        first_day=dt.date(2026, 3, 1),
        last_day=dt.date(2026, 3, 5),
        tenants=["a", "b", "d"],
        groups=["billing", "campaigns"],
    )
    assert [(g, r.first.tenant_id, r.last.tenant_id, r.assets) for g, r in plans] == [
        ("campaigns", "a", "b", ("campaign_analytics", "sequence_step_analytics")),
        ("campaigns", "d", "d", ("campaign_analytics", "sequence_step_analytics")),
        ("billing", "a", "b", ("billing_analytics",)),
        ("billing", "d", "d", ("billing_analytics",)),
    ]
    everything = plan_backfill(
        clean_instance, first_day=dt.date(2026, 3, 1), last_day=dt.date(2026, 3, 1), tenants=None
    )
    assert len(everything) == 5  # five asset groups, all tenants in one block each


def test_a_long_backfill_is_cut_into_runs_of_bounded_size(clean_instance):
    """A rebuild over many days becomes runs of at most max_partitions partitions, covering
    every day exactly once, so memory stays bounded and progress shows run by run."""
    from analytics_pipeline.automation.backfill import plan_backfill

    add_tenants(clean_instance, ["a", "b", "c"])
    plans = plan_backfill(
        clean_instance,
        first_day=dt.date(2026, 1, 1),
        last_day=dt.date(2026, 1, 31),
        tenants=None,
        tables=["campaign_analytics"],
        max_partitions=30,  # 3 tenants x 10 days
    )
    spans = [(r.first.day, r.last.day) for _, r in plans]
    assert spans == [
        (dt.date(2026, 1, 1), dt.date(2026, 1, 10)),
        (dt.date(2026, 1, 11), dt.date(2026, 1, 20)),
        (dt.date(2026, 1, 21), dt.date(2026, 1, 30)),
        (dt.date(2026, 1, 31), dt.date(2026, 1, 31)),
    ]
    assert {(r.first.tenant_id, r.last.tenant_id) for _, r in plans} == {("a", "c")}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # The message fits the command line: it names --tenants, not a rename in OLTP.
        ({"tenants": ["ok", "not|ok"]}, "'not|ok' cannot be a partition key: .* --tenants;"),
        ({"groups": ["nope"]}, "unknown asset group 'nope'"),
        ({"tables": ["emails"]}, "unknown table 'emails'"),
        ({"first_day": dt.date(2026, 3, 9)}, "--start 2026-03-09 is after --end 2026-03-05"),
        ({"first_day": dt.date(2001, 1, 1)}, "before the first partition"),
        ({"max_partitions": 0}, "--max-partitions-per-run 0 must be at least 1"),
    ],
)
def test_backfill_refuses_bad_input_before_doing_anything(clean_instance, kwargs, message):
    from analytics_pipeline.automation.backfill import plan_backfill
    from analytics_pipeline.errors import AnalyticsPipelineError

    args = {
        "first_day": dt.date(2026, 3, 1),
        "last_day": dt.date(2026, 3, 5),
        "tenants": ["ok"],
        **kwargs,
    }
    with pytest.raises(AnalyticsPipelineError, match=message.replace("|", r"\|")):
        plan_backfill(clean_instance, **args)
    if "tenants" in kwargs:
        assert clean_instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME) == []


def test_transient_database_errors_are_told_apart_from_permanent_ones(oltp_url):
    """Real errors from a real server: retry a refused connection, fail on a bad table."""
    from analytics_pipeline.errors import RollupError
    from analytics_pipeline.partitions import TenantDay
    from analytics_pipeline.resources.database import OlapDatabase
    from analytics_pipeline.rollups.engine import refresh
    from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS

    part = [TenantDay("tenant-001", dt.date(2026, 3, 20))]
    closed = sa.make_url(oltp_url).set(port=9).render_as_string(hide_password=False)
    with pytest.raises(RollupError) as err:
        refresh(
            CAMPAIGN_ANALYTICS, part, oltp=OltpDatabase(url=closed), olap=OlapDatabase(url=closed)
        )
    assert isinstance(err.value, TransientError) and "will be retried" in str(err.value)
    run_sql(oltp_url, "ALTER TABLE analytics.campaign_analytics RENAME COLUMN replied TO r")
    with pytest.raises(RollupError) as err:
        refresh(
            CAMPAIGN_ANALYTICS,
            part,
            oltp=OltpDatabase(url=oltp_url),
            olap=OlapDatabase(url=oltp_url),
        )
    assert not isinstance(err.value, TransientError) and "UndefinedColumn" in str(err.value)


def test_transient_failures_are_retried_and_permanent_ones_are_not(
    clean_instance, oltp_url, monkeypatch
):
    """Through Dagster: an unreachable OLTP is retried MAX_RETRIES times; a broken table is not."""
    from analytics_pipeline.assets import rollups as asset_module

    monkeypatch.setattr(asset_module, "RETRY_BASE_SECONDS", 0)
    add_tenants(clean_instance, ["tenant-001"])
    selection = [dg.AssetKey(["analytics", "campaign_analytics"])]
    key = "2026-03-20|tenant-001"

    def run(url):
        monkeypatch.setenv("OLTP_DATABASE_URL", url)
        monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
        from analytics_pipeline.definitions import defs

        return defs.resolve_job_def("refresh_analytics").execute_in_process(
            instance=clean_instance,
            partition_key=key,
            asset_selection=selection,
            raise_on_error=False,
        )

    def retries(result):
        return len([e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"])

    unreachable = run(sa.make_url(oltp_url).set(port=9).render_as_string(hide_password=False))
    assert not unreachable.success
    assert retries(unreachable) == asset_module.MAX_RETRIES
    run_sql(oltp_url, "ALTER TABLE analytics.campaign_analytics RENAME COLUMN replied TO r")
    broken = run(oltp_url)
    assert not broken.success
    assert retries(broken) == 0


# Three late changes on a diagonal of the tenant x day matrix: no rectangle covers them without
# refreshing several times what changed (the bounding one is 3 tenants x 15 days).
SCATTERED = [
    ("tenant-001", "2026-03-13"),
    ("tenant-002", "2026-03-20"),
    ("tenant-003", "2026-03-27"),
]


def test_scattered_changes_are_refreshed_exactly_by_an_exact_run(
    clean_instance, oltp_url, monkeypatch
):
    """Why: rectangles over scattered changes refreshed ~12x what changed at production scale
    (bench/production_scale.py --paths burst). The sensor sends them to the exact-refresh job;
    its run must rewrite exactly the changed partitions, with the same rows the contract gives,
    and record each of them (and only them) as materialized, with its own figures."""
    from analytics_pipeline.definitions import defs
    from analytics_pipeline.resources.database import OlapDatabase
    from analytics_pipeline.run_tags import EXACT_REFRESH_JOB
    from analytics_pipeline_tests import oracle
    from analytics_pipeline_tests.testbed import truncate_olap

    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    late_data_sensor = sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))
    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    truncate_olap(OlapDatabase(url=oltp_url))
    start = evaluate_sensor(late_data_sensor, clean_instance, oltp_url)
    for tenant, day in SCATTERED:
        run_sql(
            oltp_url,
            "UPDATE emails SET opened = now() WHERE tenant_id = :t AND opened IS NULL "
            "AND sent_at >= CAST(:d AS date) AND sent_at < CAST(:d AS date) + 1",
            t=tenant,
            d=day,
        )
    tick = evaluate_sensor(late_data_sensor, clean_instance, oltp_url, start.cursor)
    assert len(tick.run_requests) == 1
    req = tick.run_requests[0]
    assert req.job_name == EXACT_REFRESH_JOB
    assert (req.tags["analytics/tenants_first"], req.tags["analytics/tenants_last"]) == (
        "tenant-001",
        "tenant-003",
    )
    tables = ("campaign_analytics", "sequence_step_analytics", "mailbox_analytics")
    cells = {(t, dt.date.fromisoformat(d)) for t, d in SCATTERED}
    before = clean_instance.event_log_storage.get_maximum_record_id()
    result = defs.resolve_job_def(EXACT_REFRESH_JOB).execute_in_process(
        run_config=req.run_config, instance=clean_instance, tags=req.tags
    )
    assert result.success
    engine = sa.create_engine(oltp_url)
    try:
        oracle.assert_tables_exact(
            engine,
            oracle.read_sources(engine),
            cells,
            {r.name: [c.name for c in r.output_columns] for r in REGISTRY if r.name in tables},
        )
    finally:
        engine.dispose()
    assert olap_rows(oltp_url, "lead_analytics") == 0  # tables without changes are not touched
    materialized = [
        e.step_materialization_data.materialization
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]
    assert sorted((m.asset_key.path[-1], m.partition) for m in materialized) == sorted(
        (name, f"{day}|{tenant}") for name in tables for tenant, day in SCATTERED
    )
    for m in materialized:
        tenant = m.partition.split("|")[1]
        # The partition's own figures and dimension tags, as the asset's materializations have.
        assert m.tags["dagster/partition/tenant"] == tenant
        assert m.metadata["dagster/row_count"].value == m.metadata["rows_written"].value > 0
    # The UI's partition status: exactly these partitions are materialized.
    for name in tables:
        assert sorted(
            clean_instance.get_materialized_partitions(
                dg.AssetKey(["analytics", name]), after_cursor=before
            )
        ) == sorted(f"{day}|{tenant}" for tenant, day in SCATTERED)
    checks = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
    ]
    assert checks and all(c.passed for c in checks)
    assert {c.asset_key.path[-1] for c in checks} == set(tables)
