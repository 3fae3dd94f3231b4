"""Benchmark: one backfill (every table, one range run) on 1 and then 2 Celery workers.

Starts real workers on the local RabbitMQ (a queue of its own), runs the same range run
`--repeat` times with each worker count on a fresh PostgreSQL-backed instance, and prints the
median wall time of each and their ratio. The `oltp` pool keeps dagster.yaml's limit (2), so two
single-slot workers can at most double the step throughput; what they cannot remove is the run's
own overhead (the orchestrator, its polling) and the shared CPU of this one machine.

    .venv/bin/python -u bench/celery_workers.py --tenants 20 --days 60 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from _databases import database

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the worker and run helpers live with the tests

from analytics_pipeline.demo.generator import DemoSize  # noqa: E402
from analytics_pipeline.demo.loader import load_demo  # noqa: E402
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags  # noqa: E402
from analytics_pipeline.warehouse.migrate import upgrade  # noqa: E402
from analytics_pipeline_tests.celery_workers import CeleryWorkers, find_run, launch_run  # noqa: E402


def timed_run(workers: CeleryWorkers, instance: dg.DagsterInstance, tags: dict, log: Path) -> float:
    started = time.perf_counter()
    marker, proc = launch_run(workers.env, tags, log)
    if proc.wait(timeout=1800) != 0:
        raise SystemExit(f"the run failed:\n{log.read_text()}")
    seconds = time.perf_counter() - started
    run = find_run(instance, marker)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    return seconds


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwind (and so stop the workers in `finally`) when `timeout` or a supervisor ends us.
    raise SystemExit(f"stopped by signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--emails-per-day", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = DemoSize(
        tenants=args.tenants,
        days=args.days,
        emails_per_day=args.emails_per_day,
        seed=13,
        end_date=dt.date(2026, 6, 30),
    )
    url = database(f"ap_bench_celery_{args.tenants}x{args.days}x{args.emails_per_day}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        load_demo(conn, size)
        upgrade(conn)
    with engine.connect() as conn:
        emails = conn.execute(sa.text("SELECT count(*) FROM emails")).scalar()
    engine.dispose()
    print(f"data: {args.tenants} tenants x {args.days} days, {emails:,} emails")
    dagster_url = (
        sa.make_url(database("ap_bench_celery_dagster", fresh=True))
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    home = Path(tempfile.mkdtemp(prefix="analytics-bench-celery-"))
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_PG_URL"] = dagster_url
    env = {
        **{k: v for k, v in os.environ.items() if k != "OLAP_DATABASE_URL"},
        "OLTP_DATABASE_URL": url,
        "DAGSTER_HOME": str(home),
    }
    tags = range_tags(
        TenantDay(size.tenant_ids()[0], size.first_day),
        TenantDay(size.tenant_ids()[-1], size.last_day),
    )
    medians: dict[int, float] = {}
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_tenants(instance, size.tenant_ids())
            for count in (1, 2):
                workers = CeleryWorkers(env, home, count=count)
                try:
                    workers.start()
                    times = []
                    for i in range(args.repeat):
                        times.append(timed_run(workers, instance, tags, home / f"r{count}-{i}.log"))
                        print(f"    {count} worker(s), run {i + 1}: {times[-1]:.1f}s")
                finally:
                    workers.stop()
                medians[count] = statistics.median(times)
                print(
                    f"  {count} worker(s): median {medians[count]:6.1f}s of "
                    + ", ".join(f"{t:.1f}" for t in times)
                )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"ratio 1 worker / 2 workers: {medians[1] / medians[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
