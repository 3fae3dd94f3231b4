"""The pipeline's own telemetry through the facade, as a Dagster resource.

Why: a materialization must report its latency and size and the pools' state, tagged with the
tenant, and have them on the wire before its step ends (a step may be a process of its own); a
failed run must become infra_error_rate. Checked with real runs, the real SDK and a PostHog
stand-in on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.assets.rollups import build_rollup_asset
from analytics_pipeline.automation.sensors import run_failure_sensor
from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.telemetry import SYSTEM_ID
from analytics_pipeline_tests.fake_posthog import FakePostHog

CAMPAIGN = build_rollup_asset(CAMPAIGN_ANALYTICS)
DAY = TenantDay("tenant-002", dt.date(2026, 3, 20))


@pytest.fixture
def tracking(posthog_server: FakePostHog, tmp_path, monkeypatch) -> EventTrackingResource:
    monkeypatch.setenv("POSTHOG_API_KEY", "phc_pipeline")
    monkeypatch.setenv("EVENT_REDACTION_SALT", "test-salt")
    return EventTrackingResource(
        environment="production",
        host=posthog_server.url,
        outbox_path=str(tmp_path / "outbox.sqlite3"),
    )


def test_a_materialization_reports_latency_and_pools_before_its_step_ends(
    posthog_server: FakePostHog,
    tracking,
    oltp,
    olap,
):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("tenants", [DAY.tenant_id])
    result = dg.materialize(
        [CAMPAIGN],
        instance=instance,
        partition_key=str(DAY.partition_key()),
        resources={"oltp": oltp, "olap": olap, "tracking": tracking},
    )
    assert result.success
    # No waiting: the step flushed before it returned.
    events = list(posthog_server.events().values())
    by_name = {}
    for e in events:
        by_name.setdefault(e["event"], []).append(e)
    (latency,) = by_name["infra_latency"]
    props = latency["properties"]
    assert latency["distinct_id"] == SYSTEM_ID
    assert props["$groups"] == {"tenant": DAY.tenant_id}
    assert props["$process_person_profile"] is False
    assert props["operation"] == "materialize:campaign_analytics"
    assert props["partitions"] == 1 and props["success"] is True
    with olap.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT count(*) FROM analytics.campaign_analytics "
                "WHERE tenant_id = :t AND date = :d"
            ),
            {"t": DAY.tenant_id, "d": DAY.day},
        ).scalar_one()
    assert rows > 0 and props["rows"] == rows
    assert props["run_id"] == result.run_id
    pools = {
        e["properties"]["pool"]: e["properties"] for e in by_name["infra_connection_pool_metrics"]
    }
    assert set(pools) == {"oltp", "olap"}
    # The step returned its connections; a pool not yet full reports no overflow, not < 0.
    assert all(p["checked_out"] == 0 and p["size"] >= 1 for p in pools.values())
    assert all(p["overflow"] == 0 for p in pools.values())

    # The same run's summary (recorded once per run) shows the rows it wrote as a preview.
    summary = result.asset_observations_for_node(CAMPAIGN.node_def.name)[0]
    preview = summary.metadata["preview"]
    assert len(preview.records) == min(rows, 5)
    assert {r.data["tenant_id"] for r in preview.records} == {DAY.tenant_id}
    assert {r.data["date"] for r in preview.records} == {DAY.day.isoformat()}


def test_a_failed_run_becomes_infra_error_rate_with_its_tenant(
    posthog_server: FakePostHog,
    tracking,
):
    @dg.op
    def explode() -> None:
        raise ValueError("boom")

    @dg.job
    def failing() -> None:
        explode()

    instance = dg.DagsterInstance.ephemeral()
    result = failing.execute_in_process(
        instance=instance, raise_on_error=False, tags={"analytics/tenant": "tenant-003"}
    )
    assert not result.success
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"tracking": tracking},
    ) as context:
        run_failure_sensor(context.for_run_failure())
    (event,) = posthog_server.events().values()
    props = event["properties"]
    assert event["event"] == "infra_error_rate"
    assert props["errors"] == 1 and props["job_name"] == "failing"
    assert props["run_id"] == result.run_id
    assert props["$groups"] == {"tenant": "tenant-003"}
    assert props["error_type"] == "ValueError", "the root cause, not Dagster's wrapper"
    assert "boom" not in event.__repr__(), "error text stays in Dagster"
