"""`analytics-pipeline dev`: the Dagster UI on the embedded default, and a clean shutdown.

Why: the README sends users here. The UI must come up on the same embedded PostgreSQL the demo
filled, with the instance stored in PostgreSQL, show the lineage, and leave nothing running
when it is stopped with SIGTERM.

The server is the session's shared `dev_server` (conftest.py), which the browser test
(test_ui_browser.py) uses too; the SIGTERM test runs after both.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
import sqlalchemy as sa

from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline_tests.conftest import ASSET_NODES, DEV_DAYS, DevServer

_, DAY2, DAY3 = (d.isoformat() for d in DEV_DAYS)
# Generous: the runs queue behind whatever the daemon's schedules started, on a busy machine.
RUN_TIMEOUT_S = 600


def _launch_runs_with_the_graphql_client(server: DevServer) -> None:
    """A partition run and a range run through Dagster's GraphQL Python client, to success."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
    target = {"repository_location_name": "analytics_pipeline", "repository_name": "__repository__"}
    one = client.submit_job_execution(
        "refresh_analytics", tags={"dagster/partition": f"{DAY2}|tenant-001"}, **target
    )
    span = client.submit_job_execution(
        "refresh_analytics",
        tags={
            "dagster/asset_partition_range_start": f"{DAY2}|tenant-001",
            "dagster/asset_partition_range_end": f"{DAY3}|tenant-001",
        },
        **target,
    )
    done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        statuses = {run: client.get_run_status(run) for run in (one, span)}
        if set(statuses.values()) <= done:
            break
        time.sleep(2)
    assert statuses == {one: DagsterRunStatus.SUCCESS, span: DagsterRunStatus.SUCCESS}, (
        server.log_tail()
    )
    embedded = server.embedded()
    embedded.start()  # attaches as a guest: the dev command owns the server
    engine = sa.create_engine(embedded.url())
    with engine.connect() as conn:
        stamps = dict(
            conn.execute(
                sa.text(
                    "SELECT date::text, min(refreshed_by_run) FROM analytics.campaign_analytics "
                    "WHERE tenant_id = 'tenant-001' GROUP BY 1"
                )
            ).all()
        )
    engine.dispose()
    assert stamps[DAY3] == span
    assert stamps[DAY2] in {one, span}


def test_dev_serves_lineage_on_embedded_postgres(dev_server: DevServer):
    nodes = dev_server.graphql(ASSET_NODES)["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    campaign = by_key["analytics/campaign_analytics"]
    assert [d["path"] for d in campaign["dependencyKeys"]] == [["oltp", "emails"]]
    assert len([k for k in by_key if k.startswith("analytics/")]) == len(REGISTRY)
    assert dev_server.embedded().is_running()
    storage = (dev_server.home / "dagster_home" / "dagster.yaml").read_text()
    assert "analytics_pipeline.instance.storage" in storage
    # dev runs Dagster from its home, so Dagster does not warn that the project's dagster.yaml
    # "will not be used" (it is the copy in that home that is).
    assert "will not be used" not in dev_server.log_tail(lines=10_000)
    _launch_runs_with_the_graphql_client(dev_server)


AUTOMATION = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""


def test_dev_runs_the_sensors_and_schedules_the_docs_describe(dev_server: DevServer):
    """README: all of them run by default with the daemon (no switch to flip in the UI)."""
    (repo,) = dev_server.graphql(AUTOMATION)["data"]["repositoriesOrError"]["nodes"]
    states = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    states |= {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert states == dict.fromkeys(
        [
            "tenant_sensor",
            "late_data_sensor",
            "run_failure_sensor",
            "source_observation_sensor",
            "daily_refresh",
            "intraday_refresh",
            "retention_schedule",
        ],
        "RUNNING",
    )


FRESHNESS = "{ assetNodes { assetKey { path } freshnessStatusInfo { freshnessStatus } } }"


def test_a_late_asset_fails_its_freshness_policy(dev_server: DevServer):
    """Freshness, judged by the daemon of a real instance: an asset whose latest refresh is two
    hours old (its runs stopped) fails its one-hour policy; the others, refreshed by the demo
    minutes ago, pass."""
    late = ["analytics", "admin_audit_log"]
    two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    dev_server.record_materialization(late, f"{DAY2}|tenant-001", two_hours_ago)
    deadline = time.monotonic() + 240
    states: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        nodes = dev_server.graphql(FRESHNESS)["data"]["assetNodes"]
        states = {
            "/".join(n["assetKey"]["path"]): (n["freshnessStatusInfo"] or {}).get("freshnessStatus")
            for n in nodes
        }
        if states["analytics/admin_audit_log"] == "DEGRADED":
            break
        time.sleep(2)
    assert states["analytics/admin_audit_log"] == "DEGRADED", (states, dev_server.log_tail())
    assert states["analytics/campaign_analytics"] == "HEALTHY", states
    assert states["oltp/emails"] is None  # sources have no policy: the product writes them


@pytest.mark.stops_dev_server
def test_dev_stops_cleanly_on_sigterm(dev_server: DevServer):
    dev_server.stop()  # SIGTERM; kills the process group (and fails) if dev hangs
    assert not dev_server.embedded().is_running(), dev_server.log_tail()
