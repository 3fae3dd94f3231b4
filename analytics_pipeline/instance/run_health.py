"""Runs whose process died: found, marked failed, and their concurrency slots given back.

A run killed by SIGKILL (OOM, a lost node, `kill -9`) never reports its end: Dagster keeps it
STARTED and its steps' slots of the `oltp` pool claimed, and two such runs block every later OLAP
run for good. Dagster's run monitoring (dagster.yaml `run_monitoring`) can fail such a run, but
only through a run launcher that can check its worker, and the stock DefaultRunLauncher cannot.

How a worker is checked: Dagster records the pid of the process executing a run in an engine
event ("Started process for run (pid: N)", or "Executing steps in process (pid: N)" for
`execute_in_process`), and this module tags each run with the host it runs on
(`analytics/host`). A run on this host whose process is gone (or whose pid now belongs to a
process started after the run) is dead. Runs of other hosts, or with no pid yet, are left alone.

Two callers: `LocalRunLauncher.check_run_worker_health`, which the daemon's run monitoring
polls; and `reap_dead_runs`, which commands that run the pipeline without the daemon
(`analytics-pipeline backfill`, `demo`) call first. Everything here that leans on Dagster's
internals (the pid's engine event, the concurrency tables) is in this module, and
test_run_health.py guards it against a Dagster upgrade.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import dagster as dg
from dagster._core.launcher import CheckRunHealthResult, LaunchRunContext, WorkerStatus

log = logging.getLogger(__name__)

HOST_TAG = "analytics/host"
# /proc start times are in clock ticks; a process that started this long after its run did
# cannot be the run's (the pid was reused).
_PID_REUSE_SLACK_SECONDS = 2.0


def this_host() -> str:
    return socket.gethostname()


def local_run_tags() -> dict[str, str]:
    """Tags for a run executed in this process (execute_in_process): where its pid means
    something."""
    return {HOST_TAG: this_host()}


def _process_started_at(pid: int) -> float | None:
    """When `pid` started (epoch seconds); None if there is no such live process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
        with open("/proc/stat") as fh:
            boot = next(float(ln.split()[1]) for ln in fh if ln.startswith("btime "))
    except (OSError, StopIteration, ValueError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has exited; only its parent has not reaped it yet
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid Dagster recorded for the process executing the run (the first one recorded)."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=50
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.engine_event_data if event is not None else None
        pid = data.metadata.get("pid") if data is not None and data.metadata else None
        if pid is not None:
            try:
                # Dagster records the pid as an int metadata value; anything else is not a pid.
                return int(cast("int", pid.value))
            except (TypeError, ValueError):
                return None
    return None


@dataclass(frozen=True)
class Verdict:
    """Whether a STARTED run's process is known to be dead, and why."""

    dead: bool
    why: str


def check_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> Verdict:
    host = run.tags.get(HOST_TAG)
    if host != this_host():
        return Verdict(False, f"runs on host {host!r}, not this one" if host else "no host tag")
    pid = run_worker_pid(instance, run.run_id)
    if pid is None:
        return Verdict(False, "no process recorded yet")
    started = _process_started_at(pid)
    record = instance.get_run_record_by_id(run.run_id)
    run_started = record.start_time if record is not None else None
    if started is None:
        return Verdict(True, f"its process (pid {pid} on {host}) is gone")
    if run_started is not None and started > run_started + _PID_REUSE_SLACK_SECONDS:
        return Verdict(True, f"its process (pid {pid} on {host}) is gone; the pid was reused")
    return Verdict(False, f"pid {pid} is alive")


def reap_dead_runs(
    instance: dg.DagsterInstance, echo: Callable[[str], None] | None = None
) -> list[str]:
    """Mark failed every STARTED run on this host whose process died, and free its slots.

    Returns their run ids. Public Dagster APIs only do the writing (report_run_failed,
    free_concurrency_slots_for_run).
    """
    reaped = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        verdict = check_run(instance, run)
        if not verdict.dead:
            continue
        message = (
            f"Marked failed by analytics-pipeline: {verdict.why} (killed?). Its concurrency "
            "slots were freed; re-run its partitions."
        )
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
        line = f"run {run.run_id} ({run.job_name}) was STARTED but {verdict.why}: marked failed"
        log.warning(line)
        if echo is not None:
            echo(line)
    return reaped


def pool_holders(instance: dg.DagsterInstance, pool: str) -> tuple[int, list[str]]:
    """The pool's limit and the run ids holding its slots (one entry per claimed slot)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    limit = info.limit if info.limit is not None else info.slot_count
    return limit, [slot.run_id for slot in info.claimed_slots]


def describe_wait(instance: dg.DagsterInstance, pool: str) -> str | None:
    """A line saying why a run would wait for `pool`, or None when a slot is free."""
    limit, holders = pool_holders(instance, pool)
    if len(holders) < limit:
        return None
    runs = ", ".join(dict.fromkeys(holders))
    return (
        f"pool {pool!r} is full ({len(holders)}/{limit} slots), held by run(s) {runs}: this run "
        "waits until they finish (a killed run is marked failed and its slots freed by the "
        "daemon's run monitoring or the next analytics-pipeline command)"
    )


class LocalRunLauncher(dg.DefaultRunLauncher):
    """The default launcher, plus a worker health check for Dagster's run monitoring.

    It tags each run it launches with this host, and reports a run's worker FAILED when its
    process is gone, so the monitoring daemon marks the run failed (and then frees its slots,
    `free_slots_after_run_end_seconds`) instead of leaving it STARTED for ever.
    """

    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, local_run_tags())
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        run = self._instance.get_run_by_id(run.run_id) or run  # with the tags added at launch
        verdict = check_run(self._instance, run)
        if verdict.dead:
            return CheckRunHealthResult(WorkerStatus.FAILED, verdict.why)
        # Alive, or not ours to judge: never fail a run on a guess.
        return CheckRunHealthResult(WorkerStatus.RUNNING, verdict.why)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> Any:
        return cls(inst_data=inst_data)
