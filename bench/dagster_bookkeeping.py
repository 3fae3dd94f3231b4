"""Benchmark: Dagster's bookkeeping per partition in a range run, stock vs pooled event storage.

Same OLTP data, same range run of campaign_analytics, each time on a fresh PostgreSQL-backed
instance: once with dagster-postgres's stock event-log storage (a new connection per event), once
with `analytics_pipeline.instance.storage.PooledPostgresEventLogStorage` (what dagster.yaml uses).
Bookkeeping = (run wall time - the refresh's own time) / partitions.

    DAGSTER_EVENT_BATCH_SIZE=1000 .venv/bin/python -u bench/dagster_bookkeeping.py --days 200
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
from _dagster_db import stock_yaml
from _databases import database

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.demo.loader import load_demo
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline.warehouse.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=3)
    parser.add_argument("--days", type=int, default=200)
    args = parser.parse_args()
    size = DemoSize(
        tenants=args.tenants,
        days=args.days,
        emails_per_day=50,
        seed=5,
        end_date=dt.date(2026, 6, 30),
    )
    oltp_url = database("ap_bench_bookkeeping", fresh=True)
    engine = sa.create_engine(oltp_url)
    with engine.begin() as conn:
        load_demo(conn, size)
        upgrade(conn)
    engine.dispose()
    os.environ["OLTP_DATABASE_URL"] = oltp_url
    from analytics_pipeline.definitions import defs

    job = defs.resolve_job_def("refresh_analytics")
    asset = [dg.AssetKey(["analytics", "campaign_analytics"])]
    tags = range_tags(
        TenantDay(size.tenant_ids()[0], size.first_day),
        TenantDay(size.tenant_ids()[-1], size.last_day),
    )
    partitions = args.tenants * args.days
    print(
        f"range run of campaign_analytics over {partitions} partitions "
        f"({args.tenants} tenants x {args.days} days); "
        f"DAGSTER_EVENT_BATCH_SIZE={os.environ.get('DAGSTER_EVENT_BATCH_SIZE', 'unset')}"
    )
    results = {}
    project = (ROOT / "dagster.yaml").read_text()
    # The two instances differ only in their storage (bench/_dagster_db.py `stock_yaml`).
    for label, yaml in (("stock", stock_yaml(project)), ("pooled", project)):
        url = database(f"ap_bench_bookkeeping_{label}", fresh=True)
        os.environ["DAGSTER_PG_URL"] = (
            sa.make_url(url)
            .set(drivername="postgresql+psycopg2")
            .render_as_string(hide_password=False)
        )
        with tempfile.TemporaryDirectory() as home:
            (Path(home) / "dagster.yaml").write_text(yaml)
            with dg.DagsterInstance.from_config(home) as instance:
                add_tenants(instance, size.tenant_ids())
                started = time.perf_counter()
                result = job.execute_in_process(
                    instance=instance,
                    tags=tags,
                    asset_selection=asset,
                    run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                )
                wall = time.perf_counter() - started
                # The run's figures are its one "Run summary" observation of the asset.
                (summary,) = result.asset_observations_for_node("analytics__campaign_analytics")
                rollup = summary.metadata["seconds"].value
        per = (wall - rollup) / partitions * 1000
        results[label] = per
        print(
            f"  {label:<7} run {wall:6.2f}s   rollup {rollup:5.2f}s   "
            f"bookkeeping {per:5.1f} ms/partition"
        )
    print(f"pooled / stock = {results['pooled'] / results['stock']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
