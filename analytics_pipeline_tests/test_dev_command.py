"""`analytics-pipeline dev`: the Dagster UI on the embedded default, and a clean shutdown.

Why: the README sends users here. The UI must come up on the same embedded PostgreSQL the demo
filled, with the instance stored in PostgreSQL, show the lineage, and leave nothing running
when it is stopped with SIGTERM.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.server import EmbeddedPostgres
from analytics_pipeline_tests.conftest import terminate
from analytics_pipeline_tests.test_cli import CLI, ROOT, _env, _run

QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def _launch_runs_with_the_graphql_client(port: int, home: Path) -> None:
    """A partition run and a range run through Dagster's GraphQL Python client, to success."""
    from dagster import DagsterRunStatus
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
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
    assert statuses == {one: DagsterRunStatus.SUCCESS, span: DagsterRunStatus.SUCCESS}
    server = EmbeddedPostgres(home / "postgres")
    server.start()  # attaches as a guest: the dev command owns the server
    engine = sa.create_engine(server.url())
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


def test_dev_serves_lineage_on_embedded_postgres_and_stops_cleanly(tmp_path: Path):
    demo = _run(
        [
            "demo",
            "--tenants",
            "1",
            "--days",
            "2",
            "--emails-per-day",
            "30",
            "--end-date",
            "2026-03-31",
        ],
        _env(tmp_path),
    )
    assert demo.returncode == 0, demo.stderr
    port = _free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "dev", "--", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=_env(tmp_path),
        # To a file, not a pipe: nobody reads a pipe while the server runs, and a full one
        # would block it.
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        nodes = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                nodes = _graphql(port, QUERY)["data"]["assetNodes"]
                if nodes:
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert nodes, f"the UI did not answer on port {port}"
        by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
        campaign = by_key["analytics/campaign_analytics"]
        assert [d["path"] for d in campaign["dependencyKeys"]] == [["oltp", "emails"]]
        assert len([k for k in by_key if k.startswith("analytics/")]) == 7
        assert EmbeddedPostgres(tmp_path / "postgres").is_running()
        storage = (tmp_path / "dagster_home" / "dagster.yaml").read_text()
        assert "postgres_url" in storage
        _launch_runs_with_the_graphql_client(port, tmp_path)
    finally:
        terminate(proc)
        log.close()
    assert not EmbeddedPostgres(tmp_path / "postgres").is_running()
