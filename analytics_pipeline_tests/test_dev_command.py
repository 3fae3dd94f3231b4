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
    proc = subprocess.Popen(
        [*CLI, "dev", "--", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
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
    finally:
        terminate(proc)
    assert not EmbeddedPostgres(tmp_path / "postgres").is_running()
