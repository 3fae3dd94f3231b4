"""`analytics-pipeline dev`: the Dagster UI on the embedded default, and a clean shutdown.

Why: the README sends users here. The UI must come up on the same embedded PostgreSQL the demo
filled, with the instance stored in PostgreSQL, show the lineage, and leave nothing running
when it is stopped with SIGTERM.

The server is the session's shared `dev_server` (conftest.py), which the browser test
(test_ui_browser.py) uses too; the SIGTERM test runs after both.
"""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from analytics_pipeline_tests.conftest import ASSET_NODES, DevServer


def _launch_runs_with_the_graphql_client(server: DevServer) -> None:
    """A partition run and a range run through Dagster's GraphQL Python client, to success."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=server.port)
    target = {"repository_location_name": "analytics_pipeline", "repository_name": "__repository__"}
    one = client.submit_job_execution(
        "refresh_analytics", tags={"dagster/partition": "2026-03-30|tenant-001"}, **target
    )
    span = client.submit_job_execution(
        "refresh_analytics",
        tags={
            "dagster/asset_partition_range_start": "2026-03-30|tenant-001",
            "dagster/asset_partition_range_end": "2026-03-31|tenant-001",
        },
        **target,
    )
    done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
    deadline = time.monotonic() + 240
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
    assert stamps["2026-03-31"] == span
    assert stamps["2026-03-30"] in {one, span}


def test_dev_serves_lineage_on_embedded_postgres(dev_server: DevServer):
    nodes = dev_server.graphql(ASSET_NODES)["data"]["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    campaign = by_key["analytics/campaign_analytics"]
    assert [d["path"] for d in campaign["dependencyKeys"]] == [["oltp", "emails"]]
    assert len([k for k in by_key if k.startswith("analytics/")]) == 7
    assert dev_server.embedded().is_running()
    storage = (dev_server.home / "dagster_home" / "dagster.yaml").read_text()
    assert "postgres_url" in storage
    _launch_runs_with_the_graphql_client(dev_server)


AUTOMATION = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { name sensorState { status } } schedules { name scheduleState { status } } } } } }"""


def test_dev_runs_the_sensors_and_schedules_the_docs_describe(dev_server: DevServer):
    """README: all five run by default with the daemon (no switch to flip in the UI)."""
    (repo,) = dev_server.graphql(AUTOMATION)["data"]["repositoriesOrError"]["nodes"]
    states = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    states |= {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert states == dict.fromkeys(
        [
            "tenant_sensor",
            "late_data_sensor",
            "run_failure_sensor",
            "daily_refresh",
            "intraday_refresh",
        ],
        "RUNNING",
    )


@pytest.mark.stops_dev_server
def test_dev_stops_cleanly_on_sigterm(dev_server: DevServer):
    dev_server.stop()  # SIGTERM; kills the process group (and fails) if dev hangs
    assert not dev_server.embedded().is_running(), dev_server.log_tail()
