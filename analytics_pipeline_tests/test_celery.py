"""The Celery deployment profile: a run's steps on two real Celery workers over RabbitMQ.

Why: on many hosts, steps go to workers through a broker (ANALYTICS_EXECUTOR=celery). The tables
must come out exact, the `oltp` pool must still cap the steps reading OLTP across workers (the
run's orchestrator claims the slot before it sends a step), and a worker lost mid-step must leave
each partition old or new, never partial, and the run finished, never waiting forever.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline_tests import oracle
from analytics_pipeline_tests.celery_workers import (
    CeleryWorkers,
    find_run,
    launch_run,
    max_overlap,
    step_intervals,
    workers_of_steps,
)
from analytics_pipeline_tests.testbed import TEST_SIZE

ROOT = Path(__file__).resolve().parents[1]
OLTP_POOL_LIMIT = 1  # below the workers' two slots, so only the pool can keep the cap
PROJECT_POOL_LIMIT = 2  # dagster.yaml's default_limit
TENANTS = TEST_SIZE.tenant_ids()
DAYS = [TEST_SIZE.first_day + dt.timedelta(days=i) for i in range(TEST_SIZE.days)]
PARTITIONS = {(t, d) for t in TENANTS for d in DAYS}
TAGS = range_tags(TenantDay(TENANTS[0], DAYS[0]), TenantDay(TENANTS[-1], DAYS[-1]))
COLUMNS = {r.name: [c.name for c in r.output_columns] for r in REGISTRY}
# Serial steps (the pool of 1) with Dagster's claim backoff are slow: a few tables show the
# cap and the routing as well as seven would.
RANGE_RUN_TABLES = ("campaign_analytics", "mailbox_analytics", "billing_analytics")
KILL_RUN_TABLES = ("campaign_analytics", "mailbox_analytics")


class Deployment:
    def __init__(self, url: str, instance: dg.DagsterInstance, workers: CeleryWorkers, home: Path):
        self.url = url
        self.instance = instance
        self.workers = workers
        self.home = home

    def run(self, name: str, tables: tuple[str, ...], timeout: float = 300) -> dg.DagsterRun:
        """Launch a run of `tables` over PARTITIONS; wait (bounded) until its process ends."""
        log = self.home / f"{name}.log"
        marker, proc = launch_run(self.workers.env, TAGS, log, steps(tables))
        try:
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        run = find_run(self.instance, marker)
        assert run is not None, log.read_text()
        return run

    def launch(self, name: str, tables: tuple[str, ...]):
        return launch_run(self.workers.env, TAGS, self.home / f"{name}.log", steps(tables))


def steps(tables: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"analytics__{t}" for t in tables)


@pytest.fixture(scope="module")
def deployment(databases, tmp_path_factory):
    home = tmp_path_factory.mktemp("celery_home")
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    url = databases.create_demo("celery")
    dagster_url = databases.create_for_dagster("celery_dagster")
    env = {
        **{k: v for k, v in os.environ.items() if k != "OLAP_DATABASE_URL"},
        "OLTP_DATABASE_URL": url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(home),
    }
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_PG_URL", dagster_url)
    workers = CeleryWorkers(env, home, count=2)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_tenants(instance, TENANTS)
            workers.start()
            yield Deployment(url, instance, workers, home)
    finally:
        workers.stop()
        mp.undo()


def _sources(url: str):
    engine = sa.create_engine(url)
    try:
        return oracle.read_sources(engine)
    finally:
        engine.dispose()


def _assert_exact(url: str, tables: tuple[str, ...]) -> None:
    engine = sa.create_engine(url)
    try:
        columns = {t: COLUMNS[t] for t in tables}
        oracle.assert_tables_exact(engine, _sources(url), PARTITIONS, columns)
    finally:
        engine.dispose()


def test_a_range_run_runs_on_both_workers_exact_and_within_the_oltp_pool(deployment):
    deployment.instance.event_log_storage.set_concurrency_slots("oltp", OLTP_POOL_LIMIT)
    run = deployment.run("range", RANGE_RUN_TABLES)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    intervals = step_intervals(deployment.instance, run.run_id)
    assert set(intervals) == set(steps(RANGE_RUN_TABLES))
    assert max_overlap(list(intervals.values())) <= OLTP_POOL_LIMIT
    ran_on = workers_of_steps(deployment.instance, run.run_id)
    assert set(ran_on) == set(intervals)
    assert {w for names in ran_on.values() for w in names} == set(deployment.workers.names)
    _assert_exact(deployment.url, RANGE_RUN_TABLES)


def _blocked_olap_writers(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'analytics_pipeline:olap' AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
    finally:
        engine.dispose()


def test_a_worker_killed_mid_step_leaves_old_or_new_rows_and_the_run_finishes(deployment):
    """The step's worker dies while its refresh waits inside its transaction; the broker hands
    the step to the other worker (late acknowledgement), and the run ends with every partition
    new. Bounded: the run's process must end within its timeout."""
    deployment.instance.event_log_storage.set_concurrency_slots("oltp", PROJECT_POOL_LIMIT)
    engine = sa.create_engine(deployment.url)
    with engine.begin() as conn:
        changed = conn.execute(
            sa.text(
                "UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-002' AND "
                "opened IS NULL AND sent_at >= '2026-03-20' AND sent_at < '2026-03-21'"
            )
        ).rowcount
    assert changed > 0
    holder = engine.connect()
    holder.begin()
    # Writers of campaign_analytics now wait inside their transaction: mid-step.
    holder.execute(sa.text("LOCK TABLE analytics.campaign_analytics IN EXCLUSIVE MODE"))
    marker, proc = deployment.launch("killed", KILL_RUN_TABLES)
    try:
        deadline = time.monotonic() + 180
        while not _blocked_olap_writers(deployment.url):
            assert proc.poll() is None, (deployment.home / "killed.log").read_text()
            assert time.monotonic() < deadline, "the campaign step never reached its write"
            time.sleep(0.5)
        run = find_run(deployment.instance, marker)
        step = next(k for k in workers_of_steps(deployment.instance, run.run_id) if "campaign" in k)
        victim = workers_of_steps(deployment.instance, run.run_id)[step][-1]
        deployment.workers.kill(victim)
        holder.rollback()
        proc.wait(timeout=300)
    finally:
        holder.close()
        if proc.poll() is None:
            proc.kill()
    run = deployment.instance.get_run_by_id(run.run_id)
    assert run.status == dg.DagsterRunStatus.SUCCESS, (deployment.home / "killed.log").read_text()
    survivor = next(n for n in deployment.workers.names if n != victim)
    assert workers_of_steps(deployment.instance, run.run_id)[step] == [victim, survivor]
    _assert_exact(deployment.url, KILL_RUN_TABLES)  # every partition new, late opens included
    engine.dispose()
