"""Benchmark: sensor and schedule tick times at scale (default 500 tenants x 730 days).

Loads a wide, thin OLTP dataset (many tenants and days, few emails a day), registers the tenants
on a fresh PostgreSQL-backed instance, and times, on the real server:
- the tenant sensor's tick that finds every tenant new (it registers the first 25);
- a tenant sensor tick with nothing new (the steady state);
- the late-data sensor's tick after a burst of late changes across every tenant and day;
- a quiet late-data tick; the daily and intraday schedule ticks.
It prints the number of runs each tick requests and the runs a day the schedules make.

    .venv/bin/python -u bench/automation_ticks.py --tenants 500 --days 730
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from _databases import database, load_dataset

from analytics_pipeline.automation import schedules, sensors
from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.partitions import add_tenants
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.settings import AutomationSettings

ROOT = Path(__file__).resolve().parents[1]


def timed(label: str, fn):
    started = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - started
    runs = len(out.run_requests or []) if isinstance(out, dg.SensorResult) else len(out)
    print(f"  {label:<46} {seconds:6.2f}s   {runs:>4} run(s) requested")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--emails-per-day", type=int, default=2)
    args = parser.parse_args()
    size = DemoSize(
        tenants=args.tenants,
        days=args.days,
        emails_per_day=args.emails_per_day,
        seed=9,
        end_date=dt.date(2026, 6, 30),
    )
    data = load_dataset(f"ap_bench_ticks_{args.tenants}x{args.days}", size)
    oltp_url = data.url
    engine = sa.create_engine(oltp_url)
    print(f"data: {args.tenants} tenants x {args.days} days {data.summary()}")
    dagster_url = database("ap_bench_ticks_dagster", fresh=True)
    os.environ["DAGSTER_PG_URL"] = (
        sa.make_url(dagster_url)
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    oltp = OltpDatabase(url=oltp_url)

    def tick(sensor, instance, cursor=None):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"oltp": oltp}
        ) as ctx:
            return sensor(ctx)

    # The deployment's defaults, the watermark lag aside (the burst is written just before).
    automation = AutomationSettings(late_data_lag_seconds=0)
    tenant_sensor = sensors.build_tenant_sensor(automation)
    late_data_sensor = sensors.build_late_data_sensor(automation)
    daily_refresh, intraday_refresh = schedules.build_refresh_schedules(automation)
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
        with dg.DagsterInstance.from_config(home) as instance:
            print("ticks:")
            timed("tenant_sensor, every tenant new", lambda: tick(tenant_sensor, instance))
            add_tenants(instance, size.tenant_ids())
            timed("tenant_sensor, nothing new", lambda: tick(tenant_sensor, instance))
            start = tick(late_data_sensor, instance)
            with engine.begin() as conn:
                changed = conn.execute(
                    sa.text("UPDATE emails SET opened = coalesce(opened, now()) WHERE id % 20 = 0")
                ).rowcount
                changed += conn.execute(
                    sa.text("UPDATE leads SET status = status WHERE id LIKE '%0'")
                ).rowcount
            burst = timed(
                f"late_data_sensor, burst of {changed:,} changed rows",
                lambda: tick(late_data_sensor, instance, start.cursor),
            )
            timed(
                "late_data_sensor, quiet",
                lambda: tick(late_data_sensor, instance, burst.cursor),
            )
            when = dt.datetime(2026, 7, 1, 0, 30, tzinfo=dt.UTC)
            daily = timed(
                "daily_refresh",
                lambda: daily_refresh(
                    dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
                ),
            )
            intraday = timed(
                "intraday_refresh",
                lambda: intraday_refresh(
                    dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
                ),
            )
    print(
        f"runs a day from the schedules: {len(daily)} daily + 48 x {len(intraday)} intraday = "
        f"{len(daily) + 48 * len(intraday)}; the late-data sensor adds at most "
        f"{automation.late_data_max_runs} a tick (4 ticks a minute), and 1 a tick in a burst"
    )
    engine.dispose()
    oltp.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
