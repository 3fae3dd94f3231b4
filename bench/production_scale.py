"""Benchmark: the pipeline at production scale (default 500 tenants x 730 days), every path.

Builds (or reuses, keyed by size) a wide, thin OLTP dataset shaped like bench/automation_ticks.py
(2 emails per tenant a day, seed 9, the last day today UTC), sets ANALYTICS_PARTITIONS_START so
that the date dimension holds exactly the data's days, and runs each path on a fresh Dagster
database, once with the project's dagster.yaml and once with stock dagster-postgres storage
(the same file with its storage replaced by `storage: postgres:`) as the baseline:

  range    (1) a range run of campaign_analytics over all tenants x the last --range-days days,
               in process: `analytics-pipeline backfill --table campaign_analytics`
  daemon   (2) the same range as a queued run: GraphQL launchRun on a dagster-webserver, started
               by `dagster-daemon run` (sensors and schedules stopped first)
  rebuild  (3) the full rebuild, all seven tables x all tenants x all days, through
               `analytics-pipeline backfill` (only with --full-rebuild; reported separately)
  ui       (4) launchPartitionBackfill of ALL partitions of campaign_analytics, or with
               --ui-tables all of all seven tables at once (allPartitions, or with
               --ui-partition-names every key, as the UI's launch dialog sends them),
               on a webserver + daemon, cancelled after --ui-timeout seconds
  burst    (5) the late-data sensor's tick after a burst of changes across every tenant

Per path and storage it prints: runs launched, wall time, the rollup SQL seconds the runs
recorded, Dagster milliseconds per partition-asset ((wall - SQL) / partition-assets), event
bytes (sum of event_logs.event) and Dagster database growth (pg_database_size) per
partition-asset, and project/stock for each. Paths (1) and (5) are repeated --repeat times and
show the median. The machine should be quiet: at the default size (2) and (4) take a long time
with stock storage.

    .venv/bin/python -u bench/production_scale.py                      # the default, 500 x 730
    .venv/bin/python -u bench/production_scale.py --full-rebuild       # plus (3)
    .venv/bin/python -u bench/production_scale.py --tenants 20 --days 60 --range-days 10 \\
        --repeat 1                                                      # a quick run
    .venv/bin/python -u bench/production_scale.py --paths range --storages project
                                                      # the project's storage only (no baseline)

The OLTP database (ap_bench_scale_oltp_<tenants>x<days>) is kept for the next run (reloaded on
another day: its last day is today); the Dagster databases (ap_bench_scale_<path>_<storage>)
are dropped unless --keep. DAGSTER_EVENT_BATCH_SIZE defaults to 1000, as `analytics-pipeline`
sets it. A run across midnight UTC gains a date partition (the script warns at the start).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import sys
import tempfile
import traceback
from pathlib import Path

from _databases import load_dataset

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("range", "daemon", "rebuild", "ui", "burst")
NUMBERED = {str(i): p for i, p in enumerate(PATHS, start=1)}
ORDER = ("burst", "range", "daemon", "ui", "rebuild")  # cheap first, the rebuild last
REPEATED = {"range", "burst"}
STORAGES = ("project", "stock")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--days", type=int, default=730, help="days of data = date partitions")
    parser.add_argument("--range-days", type=int, default=30, help="days in (1) and (2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (1) and (5); median")
    parser.add_argument(
        "--paths",
        default="range,daemon,ui,burst",
        help="comma list of range,daemon,rebuild,ui,burst (or 1-5); default all but rebuild",
    )
    parser.add_argument("--full-rebuild", action="store_true", help="also run (3)")
    parser.add_argument(
        "--ui-timeout", type=float, default=1200, help="seconds before (4) is cancelled"
    )
    parser.add_argument(
        "--ui-partition-names",
        action="store_true",
        help="(4) sends every partition key, as the UI's launch dialog does, not allPartitions",
    )
    parser.add_argument(
        "--run-timeout", type=float, default=7200, help="seconds to wait for the run in (2)"
    )
    parser.add_argument(
        "--ui-tables",
        choices=("campaign", "all"),
        default="campaign",
        help="(4) backfills campaign_analytics alone or all seven tables at once",
    )
    parser.add_argument("--keep", action="store_true", help="keep the Dagster databases")
    parser.add_argument(
        "--storages",
        default=",".join(STORAGES),
        help="comma list of project,stock (default both: stock is the baseline)",
    )
    args = parser.parse_args(argv)
    chosen = {NUMBERED.get(p.strip(), p.strip()) for p in args.paths.split(",") if p.strip()}
    unknown = chosen - set(PATHS)
    if unknown:
        parser.error(f"unknown path(s) {sorted(unknown)}; choose from {', '.join(PATHS)} or 1-5")
    if args.full_rebuild:
        chosen.add("rebuild")
    args.chosen = [p for p in ORDER if p in chosen]
    if not 1 <= args.range_days <= args.days:
        parser.error("--range-days must be between 1 and --days")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    if not storages or set(storages) - set(STORAGES):
        parser.error(f"--storages: choose from {', '.join(STORAGES)}")
    args.storages = [s for s in STORAGES if s in storages]
    return args


def load_oltp(size) -> str:
    """The OLTP (and OLAP) database of this size, loaded unless that exact data is there."""
    data = load_dataset(f"ap_bench_scale_oltp_{size.tenants}x{size.days}", size)
    print(
        f"data: {size.tenants} tenants x {size.days} days, {size.first_day}..{size.last_day} "
        + data.summary()
    )
    return data.url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print("command:", shlex.join(sys.orig_argv))
    last_day = dt.datetime.now(dt.UTC).date()
    first_day = last_day - dt.timedelta(days=args.days - 1)
    # Read by analytics_pipeline.partitions at import: set before anything imports it. The date
    # dimension ends today (end_offset=1), so it holds exactly the data's days.
    os.environ["ANALYTICS_PARTITIONS_START"] = first_day.isoformat()
    # What `analytics-pipeline` sets for itself and the processes it starts.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
    work = Path(tempfile.mkdtemp(prefix="ap-bench-scale-"))
    os.environ["ANALYTICS_PIPELINE_HOME"] = str(work)  # event outbox, away from the checkout
    print(
        f"started {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; "
        f"ANALYTICS_PARTITIONS_START={first_day}, "
        f"DAGSTER_EVENT_BATCH_SIZE={os.environ['DAGSTER_EVENT_BATCH_SIZE']}; "
        f"paths {', '.join(args.chosen)}; repeat {args.repeat}; homes and logs in {work}"
    )

    from _dagster_db import stock_yaml
    from _scale_paths import ALL_TABLES, Bench, Scale
    from _scale_report import details, median, table

    from analytics_pipeline.demo.generator import DemoSize
    from analytics_pipeline.history import partitions_start
    from analytics_pipeline.partitions import daily_partitions

    size = DemoSize(
        tenants=args.tenants, days=args.days, emails_per_day=2, seed=9, end_date=last_day
    )
    oltp_url = load_oltp(size)
    os.environ["OLTP_DATABASE_URL"] = oltp_url
    os.environ.pop("OLAP_DATABASE_URL", None)
    date_keys = len(daily_partitions(partitions_start()).get_partition_keys())
    if date_keys != args.days:
        print(f"warning: the date dimension has {date_keys} days, not {args.days} (midnight?)")
    project = (ROOT / "dagster.yaml").read_text()
    scale = Scale(
        tenants=size.tenant_ids(),
        first_day=first_day,
        last_day=last_day,
        range_days=args.range_days,
        oltp_url=oltp_url,
        yaml_by_storage={"project": project, "stock": stock_yaml(project)},
        work=work,
        keep=args.keep,
        ui_timeout=args.ui_timeout,
        run_timeout=args.run_timeout,
        ui_partition_names=args.ui_partition_names,
        ui_tables=ALL_TABLES if args.ui_tables == "all" else ("campaign_analytics",),
    )
    print(
        f"range: {args.tenants} tenants x {args.range_days} days "
        f"({scale.range_first}..{last_day}) = {args.tenants * args.range_days:,} partitions; "
        f"all partitions of one asset: {args.tenants * args.days:,}"
    )
    bench = Bench(scale)
    results: dict[str, dict[str, list]] = {}
    try:
        for path in args.chosen:
            run = {
                "range": bench.range_in_process,
                "daemon": bench.range_daemon,
                "rebuild": bench.full_rebuild,
                "ui": bench.ui_backfill,
                "burst": bench.burst,
            }[path]
            for i in range(args.repeat if path in REPEATED else 1):
                for storage in args.storages:
                    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {path} #{i + 1} on {storage}")
                    try:
                        measure = run(storage)
                    except Exception:
                        print(f"    {path} on {storage} FAILED:\n{traceback.format_exc()}")
                        continue
                    results.setdefault(path, {}).setdefault(storage, []).append(measure)
    finally:
        bench.close()
    medians = {
        path: {
            storage: median(results[path][storage])
            for storage in STORAGES
            if storage in results[path]
        }
        for path in PATHS
        if path in results
    }
    print()
    print(
        "pa = partition-assets (partitions x assets; for the burst, the changed ones; for the "
        "UI backfill, the materialized ones); runs = runs launched (for the burst: requested); "
        "missing = partition-assets with no materialization recorded. "
        f"Median of {args.repeat} for range and burst."
    )
    main_paths = {p: m for p, m in medians.items() if p != "rebuild"}
    if main_paths:
        table(main_paths)
        details(main_paths)
    if "rebuild" in medians:
        print("full rebuild (all seven tables, all tenants x all days):")
        table({"rebuild": medians["rebuild"]})
        details({"rebuild": medians["rebuild"]})
    wanted = sum((args.repeat if p in REPEATED else 1) * len(args.storages) for p in args.chosen)
    got = sum(len(ms) for by_storage in results.values() for ms in by_storage.values())
    if got < wanted:
        print(f"{wanted - got} of {wanted} measurement(s) FAILED (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
