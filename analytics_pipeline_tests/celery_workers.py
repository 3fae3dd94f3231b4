"""Real Celery workers on the local RabbitMQ, and runs whose steps they execute.

Each `CeleryWorkers` listens on a queue of its own (a random name), so concurrent test sessions
never take each other's steps; the queue is deleted and every worker killed when it stops. The
benchmark (bench/celery_workers.py) uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import kombu

from analytics_pipeline.deployment.executor import (
    CELERY,
    CELERY_BROKER_ENV,
    CELERY_QUEUE_ENV,
    EXECUTOR_ENV,
    celery_config,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
APP = "analytics_pipeline.deployment.celery_app"
RUN_TAG = "analytics_pipeline_tests/run"


def celery_env(base: dict[str, str], queue: str) -> dict[str, str]:
    """`base` with the Celery profile on `queue` (broker: ANALYTICS_CELERY_BROKER or local)."""
    return {**base, EXECUTOR_ENV: CELERY, CELERY_QUEUE_ENV: queue}


def broker_reachable(env: dict[str, str]) -> None:
    """Fail (never skip) with a clear message when the broker is not there."""
    broker = celery_config(env)["broker"]
    try:
        with kombu.Connection(broker, connect_timeout=5) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        raise AssertionError(
            f"the Celery tests need RabbitMQ at {broker} ({CELERY_BROKER_ENV}): {exc}"
        ) from exc


class CeleryWorkers:
    """`count` worker processes (`concurrency` steps each) on their own queue."""

    def __init__(self, env: dict[str, str], logs: Path, count: int = 2, concurrency: int = 1):
        self.queue = f"analytics-test-{uuid.uuid4().hex[:10]}"
        self.env = celery_env(env, self.queue)
        self.logs = logs
        self.names = [f"{self.queue}-w{i + 1}@localhost" for i in range(count)]
        self.concurrency = concurrency
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 120) -> None:
        broker_reachable(self.env)
        for name in self.names:
            log = (self.logs / f"{name.split('@')[0]}.log").open("w")
            self.procs[name] = subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    APP,
                    "worker",
                    "-Q",
                    self.queue,
                    "-n",
                    name,
                    "-c",
                    str(self.concurrency),
                    "-l",
                    "INFO",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        for name in self.names:
            while " ready." not in self.log(name):
                proc = self.procs[name]
                assert proc.poll() is None, f"worker {name} exited\n{self.log(name)}"
                assert time.monotonic() < deadline, f"worker {name} not ready\n{self.log(name)}"
                time.sleep(0.5)

    def log(self, name: str) -> str:
        path = self.logs / f"{name.split('@')[0]}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self, name: str) -> None:
        """SIGKILL a worker and its pool processes, as a lost machine would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        self.procs.clear()
        with (
            contextlib.suppress(Exception),
            kombu.Connection(celery_config(self.env)["broker"]) as c,
        ):
            c.default_channel.queue_delete(self.queue)


def launch_run(
    env: dict[str, str], tags: dict[str, str], log: Path, steps: tuple[str, ...] = ()
) -> tuple[str, subprocess.Popen]:
    """`dagster job execute` of refresh_analytics (only `steps`, if given): the run's
    orchestrator, as a process.

    Returns the value of the run's RUN_TAG (to find the run in the instance) and the process.
    """
    marker = uuid.uuid4().hex
    selection = ["-o", ",".join(steps)] if steps else []
    proc = subprocess.Popen(
        [
            str(BIN / "dagster"),
            "job",
            "execute",
            "-m",
            "analytics_pipeline.definitions",
            "-j",
            "refresh_analytics",
            "--tags",
            json.dumps({**tags, RUN_TAG: marker}),
            *selection,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return marker, proc


def find_run(instance: dg.DagsterInstance, marker: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_TAG: marker}))
    return runs[0] if runs else None


def step_intervals(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Per step, (start, end) timestamps from the run's event log."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for record in instance.get_records_for_run(run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type == dg.DagsterEventType.STEP_START:
            starts.setdefault(event.step_key, entry.timestamp)
        elif event.event_type in (
            dg.DagsterEventType.STEP_SUCCESS,
            dg.DagsterEventType.STEP_FAILURE,
        ):
            ends[event.step_key] = entry.timestamp
    return {k: (starts[k], ends[k]) for k in starts if k in ends}


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    open_now = peak = 0
    for _, delta in edges:
        open_now += delta
        peak = max(peak, open_now)
    return peak


def workers_of_steps(instance: dg.DagsterInstance, run_id: str) -> dict[str, list[str]]:
    """Per step, the Celery workers that executed it (in order: more than one if redelivered)."""
    out: dict[str, list[str]] = {}
    for record in instance.get_records_for_run(run_id).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.event_type != dg.DagsterEventType.ENGINE_EVENT:
            continue
        worker = event.engine_event_data.metadata.get("Celery worker")
        if worker is not None and event.step_key:
            out.setdefault(event.step_key, []).append(str(worker.value))
    return out
