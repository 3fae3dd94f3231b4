"""A killed run does not block the pipeline: it is marked failed and its pool slots are freed.

Why (issue 11): SIGKILL of a running refresh (OOM, a lost node, `kill -9`) left the run STARTED
and its slot of the `oltp` pool (limit 2) taken; two such kills and every later OLAP run waited
for ever, printing nothing. Here two runs are caught holding both slots (each step blocked on an
advisory lock the test holds, exactly where a long refresh would be) and SIGKILLed with
everything they started; a third run must then complete by itself, through the daemon's run
monitoring and through the in-process `analytics-pipeline backfill`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.instance import run_health
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline_tests.testbed import CLI, TEST_SIZE, start_daemon, terminate, wait_until

ROOT = Path(__file__).resolve().parents[1]
DAY = TEST_SIZE.last_day


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants, as the OOM killer or a lost node would."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    for p in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


class Setup:
    """OLTP+OLAP in one database, a Dagster instance in another, the project's dagster.yaml."""

    def __init__(self, databases, home: Path) -> None:
        self.url = databases.create_demo("kill")
        self.dagster_url = (
            sa.make_url(databases.create("kill_dagster"))
            .set(drivername="postgresql+psycopg2")
            .render_as_string(hide_password=False)
        )
        self.home = home
        shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "OLAP_DATABASE_URL"},
            "OLTP_DATABASE_URL": self.url,
            "DAGSTER_PG_URL": self.dagster_url,
            "DAGSTER_HOME": str(home),
        }
        self.engine = sa.create_engine(self.url)
        self.dagster_engine = sa.create_engine(self.dagster_url)
        self._blocker = self.engine.connect()

    def block(self, tenant: str) -> None:
        """Hold the advisory lock a refresh of campaign_analytics for `tenant` takes first."""
        self._blocker.execute(
            sa.select(
                sa.func.pg_advisory_lock(
                    sa.func.hashtextextended(f"campaign_analytics/{tenant}", 0)
                )
            )
        )
        self._blocker.commit()

    def unblock(self) -> None:
        self._blocker.execute(sa.select(sa.func.pg_advisory_unlock_all()))
        self._blocker.commit()

    def waiting_on_lock(self) -> int:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event = 'advisory'"
                )
            ).scalar_one()

    def slot_holders(self) -> list[str]:
        with self.dagster_engine.connect() as conn:
            return (
                conn.execute(
                    sa.text(
                        "SELECT run_id FROM concurrency_slots WHERE concurrency_key = 'oltp' "
                        "AND run_id IS NOT NULL AND NOT deleted ORDER BY run_id"
                    )
                )
                .scalars()
                .all()
            )

    def close(self) -> None:
        self._blocker.close()
        self.engine.dispose()
        self.dagster_engine.dispose()


@pytest.fixture
def setup(databases, tmp_path, monkeypatch):
    s = Setup(databases, tmp_path)
    for key in ("OLTP_DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"):
        monkeypatch.setenv(key, s.env[key])
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    yield s
    s.close()


def _statuses(instance: dg.DagsterInstance, run_ids: list[str]) -> list[dg.DagsterRunStatus]:
    return [instance.get_run_by_id(r).status for r in run_ids]


def _backfill(setup: Setup, tenant: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *CLI,
            "backfill",
            "--start",
            str(DAY),
            "--end",
            str(DAY),
            "--tenants",
            tenant,
            "--table",
            "campaign_analytics",
        ],
        cwd=ROOT,
        env=setup.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def test_a_backfill_after_two_killed_backfills_completes_on_its_own(setup):
    with dg.DagsterInstance.from_config(str(setup.home)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        # Both at once: a backfill started after a killed one would already free its slots.
        for tenant in ("tenant-001", "tenant-002"):
            setup.block(tenant)
        procs = [_backfill(setup, t) for t in ("tenant-001", "tenant-002")]
        try:

            def both_blocked() -> bool:
                for proc in procs:  # one that ended cannot block: say why, now
                    assert proc.poll() is None, f"a backfill ended early:\n{proc.stdout.read()}"
                return setup.waiting_on_lock() == 2

            wait_until(both_blocked, 600, "both backfills to block")
            wait_until(lambda: len(setup.slot_holders()) == 2, 300, "both oltp slots to be taken")
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                proc.stdout.close()
        killed = setup.slot_holders()
        assert _statuses(instance, killed) == [dg.DagsterRunStatus.STARTED] * 2
        assert sorted(setup.slot_holders()) == sorted(killed), "both oltp slots are taken"
        setup.unblock()

        third = _backfill(setup, "tenant-003")
        try:
            out, _ = third.communicate(timeout=900)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(third.pid, signal.SIGKILL)
        assert third.returncode == 0, out
        for run_id in killed:
            assert f"run {run_id} (refresh_analytics) was STARTED but its process" in out
        assert "succeeded" in out
        assert _statuses(instance, killed) == [dg.DagsterRunStatus.FAILURE] * 2
        assert setup.slot_holders() == []


def _launch(setup: Setup, tenant: str) -> str:
    tags = {
        **range_tags(TenantDay(tenant, DAY), TenantDay(tenant, DAY)),
        "analytics/tenant": tenant,
    }
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "job",
            "launch",
            "-w",
            str(ROOT / "workspace.yaml"),
            "-j",
            "refresh_analytics",
            "-o",
            "analytics__campaign_analytics",
            "--tags",
            json.dumps(tags),
        ],
        cwd=ROOT,
        env=setup.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return tags


def _run_of(instance: dg.DagsterInstance, tenant: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"analytics/tenant": tenant}))
    return runs[0] if runs else None


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        found = re.search(r"Started process for run \(pid: (\d+)\)", entry.message or "")
        if found:
            return int(found.group(1))
    return None


def test_the_daemon_fails_two_killed_runs_and_a_third_completes_on_its_own(setup):
    with dg.DagsterInstance.from_config(str(setup.home)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        daemon = start_daemon(setup.env)
        try:
            # Both blocked first: monitoring is quick to fail a killed run and free its slot.
            runs = []
            for tenant in ("tenant-001", "tenant-002"):
                setup.block(tenant)
                _launch(setup, tenant)
                runs.append(
                    wait_until(lambda t=tenant: _run_of(instance, t), 300, f"{tenant}'s run")
                )
            wait_until(lambda: setup.waiting_on_lock() == 2, 600, "both runs to block")
            killed = [r.run_id for r in runs]
            wait_until(lambda: setup.slot_holders() == sorted(killed), 300, "both oltp slots taken")
            for run in runs:
                tags = instance.get_run_by_id(run.run_id).tags
                assert tags[run_health.HOST_TAG] == run_health.this_host()
                _kill_tree(_worker_pid(instance, run.run_id))
            setup.unblock()

            _launch(setup, "tenant-003")
            third = wait_until(lambda: _run_of(instance, "tenant-003"), 300, "the third run")
            wait_until(
                lambda: (
                    instance.get_run_by_id(third.run_id).status
                    in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
                ),
                900,
                "the third run to finish",
            )
            assert instance.get_run_by_id(third.run_id).status == dg.DagsterRunStatus.SUCCESS
            assert _statuses(instance, killed) == [dg.DagsterRunStatus.FAILURE] * 2
            wait_until(lambda: setup.slot_holders() == [], 300, "the slots to be freed")
        finally:
            terminate(daemon)


def test_guard_the_dagster_internals_run_health_relies_on():
    """run_health leans on Dagster details that an upgrade may change: the pid of an
    in-process run in an engine event, the launcher's health-check hook that run monitoring
    polls, and the concurrency-info fields. Fail here, loudly, rather than let killed runs
    block the pool again."""
    import inspect

    from dagster._daemon.monitoring import run_monitoring

    @dg.op
    def noop() -> None:
        return None

    @dg.job
    def tiny() -> None:
        noop()

    with dg.DagsterInstance.ephemeral() as instance:
        result = tiny.execute_in_process(instance=instance)
        assert run_health.run_worker_pid(instance, result.run_id) == os.getpid()
        info = instance.event_log_storage.get_concurrency_info("oltp")
        assert hasattr(info, "claimed_slots") and hasattr(info, "limit")
    source = inspect.getsource(run_monitoring.monitor_started_run)
    assert "supports_check_run_worker_health" in source and "report_run_failed" in source
    assert run_health.LocalRunLauncher().supports_check_run_worker_health


def test_a_backfill_in_two_worker_processes_records_every_run_and_partition(setup):
    """`backfill --workers 2` runs its runs in two processes of their own (one run keeps about
    one core busy): every planned run must still be recorded, succeed, be reported, and
    materialize exactly its partitions, as when the runs go one after another."""
    first = DAY - dt.timedelta(days=3)
    tables = ["campaign_analytics", "lead_analytics"]  # two asset groups
    with dg.DagsterInstance.from_config(str(setup.home)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        out = subprocess.run(
            [*CLI, "backfill", "--start", str(first), "--end", str(DAY)]
            + [arg for t in tables for arg in ("--table", t)]
            # 3 tenants x 4 days, at most 6 partitions a run: 2 runs of 2 days per group.
            + ["--max-partitions-per-run", "6", "--workers", "2"],
            cwd=ROOT,
            env=setup.env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"analytics/reason": "backfill"}))
        assert len(runs) == 4
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert sorted(re.findall(r"run (\S+) succeeded", out.stdout)) == sorted(
            r.run_id for r in runs
        )
        days = [(first + dt.timedelta(days=i)).isoformat() for i in range(4)]
        expected = {
            str(dg.MultiPartitionKey({"tenant": t, "date": d}))
            for t in TEST_SIZE.tenant_ids()
            for d in days
        }
        for table in tables:
            key = dg.AssetKey(["analytics", table])
            assert instance.get_materialized_partitions(key) == expected, table
            # Each partition once: no run was executed twice.
            records = instance.fetch_materializations(key, limit=100).records
            assert len(records) == len(expected), table
