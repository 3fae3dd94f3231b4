"""`dagster-webserver` and `dagster-daemon run` on one Dagster home, as an operator runs them.

Both load the project's workspace.yaml from the project folder. The sensors and schedules that
would start runs of their own (everything but the run-failure sensor) are stopped through the
UI's GraphQL API before the daemon starts, so the only runs are the ones a benchmark launches.
Each process is its own session; stopping one signals its whole process group (the code server
and run workers it started), then kills what is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCATION = "analytics_pipeline"
REPOSITORY = "__repository__"
KEEP_RUNNING = frozenset({"run_failure_sensor"})
# The daemons a queued run and a backfill need before a benchmark starts its clock.
NEEDED_DAEMONS = frozenset({"QUEUED_RUN_COORDINATOR", "BACKFILL"})

AUTOMATION = """{ repositoriesOrError { ... on RepositoryConnection { nodes {
  sensors { id name sensorState { status } }
  schedules { id name scheduleState { status } } } } } }"""
STOP_SENSOR = """mutation($id: String) { stopSensor(id: $id) {
  __typename ... on PythonError { message } } }"""
STOP_SCHEDULE = """mutation($id: String) { stopRunningSchedule(id: $id) {
  __typename ... on PythonError { message } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQLError(RuntimeError):
    pass


class DagsterServices:
    """The webserver and the daemon of one benchmark path; a context manager that stops both."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env = dict(env)
        self.logs = logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/graphql"
        self.procs: dict[str, subprocess.Popen] = {}

    def __enter__(self) -> DagsterServices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start(self, name: str, cmd: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.procs[name] = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def log_bytes(self, name: str) -> int:
        path = self.logs / f"{name}.log"
        return path.stat().st_size if path.exists() else 0

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace").splitlines() if path.exists() else []
        return f"--- {name} log (last lines) ---\n" + "\n".join(text[-lines:])

    def start_webserver(self, timeout: float = 180) -> None:
        workspace = str(ROOT / "workspace.yaml")
        self._start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-w",
                workspace,
            ],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _exited(self.procs["webserver"]):
                break
            try:
                if self.graphql(AUTOMATION)[0]["data"]["repositoriesOrError"]["nodes"]:
                    return
            except (OSError, KeyError, TypeError, GraphQLError):
                pass
            time.sleep(1)
        raise RuntimeError(
            f"the webserver did not serve the code location\n{self.log_tail('webserver')}"
        )

    def stop_automation(self) -> list[str]:
        """Stop every sensor and schedule but the run-failure sensor; return what was stopped."""
        (repo,) = self.graphql(AUTOMATION)[0]["data"]["repositoriesOrError"]["nodes"]
        stopped = []
        for kind, mutation, state in (
            ("sensors", STOP_SENSOR, "sensorState"),
            ("schedules", STOP_SCHEDULE, "scheduleState"),
        ):
            for item in repo[kind]:
                if item["name"] in KEEP_RUNNING or item[state]["status"] != "RUNNING":
                    continue
                (result,) = self.graphql(mutation, {"id": item["id"]})[0]["data"].values()
                if result["__typename"] == "PythonError":
                    raise GraphQLError(f"stopping {item['name']}: {result['message']}")
                stopped.append(item["name"])
        (repo,) = self.graphql(AUTOMATION)[0]["data"]["repositoriesOrError"]["nodes"]
        running = [
            item["name"]
            for kind, state in (("sensors", "sensorState"), ("schedules", "scheduleState"))
            for item in repo[kind]
            if item[state]["status"] == "RUNNING" and item["name"] not in KEEP_RUNNING
        ]
        if running:
            raise GraphQLError(f"still running after stopping them: {running}")
        return stopped

    def start_daemon(self, instance: dg.DagsterInstance, timeout: float = 180) -> None:
        """Start `dagster-daemon run` and wait until the run queue and backfill daemons beat."""
        started = time.time()
        self._start(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")]
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _exited(self.procs["daemon"]):
            beats = instance.get_daemon_heartbeats()
            if all(d in beats and beats[d].timestamp >= started for d in NEEDED_DAEMONS):
                return
            time.sleep(1)
        raise RuntimeError(f"the daemon did not start\n{self.log_tail('daemon')}")

    def graphql(
        self, query: str, variables: Mapping | None = None, timeout: float = 60
    ) -> tuple[dict, int]:
        """The response, and the size in bytes of the request body that was sent."""
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        req = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            out = json.loads(resp.read())
        if out.get("errors"):
            raise GraphQLError(json.dumps(out["errors"])[:2000])
        return out, len(body)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM each process group, SIGKILL what is still there after `timeout` seconds.

        Each leader is reaped only after its group was killed: until then its id cannot be
        reused, so the signals reach only the processes started here.
        """
        for proc in self.procs.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(map(_exited, self.procs.values())):
            time.sleep(0.2)
        for proc in self.procs.values():
            # Children (code server, run workers) may outlive their parent: kill the group.
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs.clear()


def _exited(proc: subprocess.Popen) -> bool:
    """Whether `proc` has exited, without reaping it (its id stays reserved)."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
