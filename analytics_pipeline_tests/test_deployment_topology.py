"""The compose topology without containers: code server, webserver and daemon as three processes.

Why: deploy/docker-compose.yaml cannot run here, but its shape can. The code location is served
by `dagster code-server start` alone; the webserver and the daemon load it only through a
workspace that points at that gRPC server, on the deployment's own dagster.yaml (deploy/). A run
launched through the webserver's GraphQL API must be queued, dequeued by the daemon, launched by
the code server and succeed, writing its rows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from analytics_pipeline.partitions import add_tenants
from analytics_pipeline_tests.fake_posthog import free_port
from analytics_pipeline_tests.testbed import TEST_SIZE, graphql

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "analytics_pipeline"
WORKSPACE_STATUS = """{ workspaceOrError { ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename } } } } }"""


class Topology:
    """The three processes, each logging to a file of its own, all killed at the end."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.env = env
        self.grpc_port, self.web_port = free_port(), free_port()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, *command: str) -> None:
        self.procs[name] = subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=self.home,
            env=self.env,
            stdout=(self.home / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n"
            + "\n".join((self.home / f"{name}.log").read_text().splitlines()[-30:])
            for name in self.procs
        )

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited\n{self.logs()}"

    def stop(self) -> None:
        # Killed with their process groups (the code server's own gRPC child included): their
        # graceful shutdown is not what this test is about, and it takes tens of seconds.
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.procs.values():
            proc.wait(timeout=30)


@pytest.fixture
def topology(databases, tmp_path):
    url = databases.create_demo("topology")
    dagster_url = databases.create_for_dagster("topology_dagster")
    (tmp_path / "dagster.yaml").write_text((ROOT / "deploy" / "dagster.yaml").read_text())
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if k not in {"OLAP_DATABASE_URL", "ANALYTICS_EXECUTOR"}
        },
        "OLTP_DATABASE_URL": url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(tmp_path),
    }
    topo = Topology(tmp_path, env)
    # The deployment's workspace, pointed at this test's port instead of the compose service.
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    workspace["load_from"][0]["grpc_server"].update(host="127.0.0.1", port=topo.grpc_port)
    (tmp_path / "workspace.yaml").write_text(yaml.safe_dump(workspace))
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_PG_URL", dagster_url)
    try:
        with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
            # Registered up front: the tenant sensor then finds nothing to build on its own.
            add_tenants(instance, TEST_SIZE.tenant_ids())
            yield topo, instance, url
    finally:
        topo.stop()
        mp.undo()


def _wait(what: str, predicate, topo: Topology, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while True:
        topo.alive()
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{topo.logs()}"
        time.sleep(1)


def test_a_run_launched_through_the_webserver_succeeds_on_the_grpc_code_server(topology):
    from dagster_graphql import DagsterGraphQLClient

    topo, instance, url = topology
    topo.start("code-server", "dagster", "code-server", "start", "-h", "127.0.0.1",
               "-p", str(topo.grpc_port), "-m", "analytics_pipeline.definitions",
               "--location-name", LOCATION)  # fmt: skip

    def healthy() -> bool:
        check = [str(BIN / "dagster"), "api", "grpc-health-check", "-p", str(topo.grpc_port)]
        return subprocess.run(check, capture_output=True, timeout=60).returncode == 0

    # As compose's depends_on (service_healthy): the others start once the code server serves.
    _wait("the code server to serve", healthy, topo)
    topo.start("webserver", "dagster-webserver", "-h", "127.0.0.1", "-p", str(topo.web_port),
               "-w", "workspace.yaml")  # fmt: skip
    topo.start("daemon", "dagster-daemon", "run", "-w", "workspace.yaml")
    client = DagsterGraphQLClient("127.0.0.1", port_number=topo.web_port)
    web = f"http://127.0.0.1:{topo.web_port}"

    def loaded() -> bool:
        try:
            entries = graphql(web, WORKSPACE_STATUS)["data"]["workspaceOrError"]["locationEntries"]
        except Exception:
            return False
        return [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"])
                for e in entries] == [(LOCATION, "LOADED", "RepositoryLocation")]  # fmt: skip

    _wait("the webserver to load the location from the gRPC server", loaded, topo)
    run_id = client.submit_job_execution(
        "refresh_analytics",
        repository_location_name=LOCATION,
        repository_name="__repository__",
        # One table is enough to prove the path; the others would only add step processes.
        op_selection=["analytics__campaign_analytics"],
        tags={
            "dagster/asset_partition_range_start": "2026-03-30|tenant-001",
            "dagster/asset_partition_range_end": "2026-03-31|tenant-001",
        },
    )
    done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    status = _wait(
        "the run to finish", lambda: (s := client.get_run_status(run_id)) in done and s, topo
    )
    assert status == dg.DagsterRunStatus.SUCCESS, topo.logs()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        stamped = conn.execute(
            sa.text(
                "SELECT DISTINCT date::text, refreshed_by_run FROM analytics.campaign_analytics "
                "WHERE tenant_id = 'tenant-001' ORDER BY 1"
            )
        ).all()
    engine.dispose()
    assert stamped == [("2026-03-30", run_id), ("2026-03-31", run_id)]
    kinds = [
        r.event_log_entry.dagster_event.event_type
        for r in instance.get_records_for_run(run_id).records
        if r.event_log_entry.dagster_event is not None
    ]
    # Queued by the webserver, then started by the daemon: the compose file's division of labour.
    assert kinds.index(dg.DagsterEventType.RUN_ENQUEUED) < kinds.index(
        dg.DagsterEventType.RUN_STARTING
    )
