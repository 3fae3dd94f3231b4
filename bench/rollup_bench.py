"""Benchmark: the pipeline's rollup against the raw SQL statement and the seed's approach.

All three run on the same generated OLTP data in one invocation, so their ratios are comparable:

- raw:      one hand-written DELETE + INSERT ... SELECT ... GROUP BY over the whole range, in one
            transaction (what a DBA would type; the floor for doing this in PostgreSQL);
- pipeline: `refresh()` over every (tenant, date) partition of the range, as the asset runs it;
- seed:     the earlier system's approach: one query per partition filtered on DATE(sent_at),
            then one upsert round trip per output row (keyed on the full grain, so that its
            result is comparable; the seed's own key, campaign_id alone, was a bug);
- dagster:  (with --dagster) the whole Dagster run over the same range on a PostgreSQL-backed
            instance, which adds Dagster's per-partition bookkeeping.

Each contender writes analytics.campaign_analytics; the results are checked to be identical.

With --all-tables it then rebuilds all seven OLAP tables over the whole range, per table:
- raw-sql:  the very statements the rollup compiles to (DELETE of the range, INSERT ... SELECT),
            run directly in one transaction, with no locks, landing table, checks or reconciliation;
- pipeline: `refresh()`, with all of those.
Usage (figures in docs/PERFORMANCE.md):

    .venv/bin/python bench/rollup_bench.py --tenants 10 --days 90 --emails-per-day 5556
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from _databases import database, load_dataset

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.partitions import TenantDay, to_windows
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import refresh
from analytics_pipeline.rollups.sql import Windows, window_params
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS

# The statements are spelled out in full on purpose: "raw" means no machinery at all.
RAW_DELETE = sa.text("""
DELETE FROM analytics.campaign_analytics
WHERE tenant_id = ANY(:tenants) AND date >= :first AND date <= :last
""")
RAW_INSERT = sa.text("""
INSERT INTO analytics.campaign_analytics (tenant_id, date, campaign_id, sent, delivered,
    opened_tracked, clicked_tracked, replied,
    bounced, unsubscribed, spam_complaints)
SELECT tenant_id, (sent_at AT TIME ZONE 'UTC')::date, campaign_id,
    count(*),
    count(*) FILTER (WHERE status = 'delivered'),
    count(*) FILTER (WHERE opened IS NOT NULL),
    count(*) FILTER (WHERE clicked IS NOT NULL),
    count(*) FILTER (WHERE replied IS NOT NULL),
    count(*) FILTER (WHERE bounce_type IS NOT NULL),
    count(*) FILTER (WHERE unsubscribed IS NOT NULL),
    count(*) FILTER (WHERE complaint IS NOT NULL)
FROM emails
WHERE tenant_id = ANY(:tenants) AND sent_at >= :lo AND sent_at < :hi
GROUP BY 1, 2, 3
""")
SEED_QUERY = sa.text("""
SELECT campaign_id,
    count(*),
    count(*) FILTER (WHERE status = 'delivered'),
    count(*) FILTER (WHERE opened IS NOT NULL),
    count(*) FILTER (WHERE clicked IS NOT NULL),
    count(*) FILTER (WHERE replied IS NOT NULL),
    count(*) FILTER (WHERE bounce_type IS NOT NULL),
    count(*) FILTER (WHERE unsubscribed IS NOT NULL),
    count(*) FILTER (WHERE complaint IS NOT NULL)
FROM emails
WHERE tenant_id = :tenant AND DATE(sent_at) = :day
GROUP BY campaign_id
""")
SEED_UPSERT = sa.text("""
INSERT INTO analytics.campaign_analytics (tenant_id, date, campaign_id, sent, delivered,
    opened_tracked, clicked_tracked, replied,
    bounced, unsubscribed, spam_complaints)
VALUES (:tenant, :day, :campaign, :m0, :m1, :m2, :m3, :m4, :m5, :m6, :m7)
ON CONFLICT (tenant_id, date, campaign_id) DO UPDATE SET
    sent = EXCLUDED.sent, delivered = EXCLUDED.delivered,
    opened_tracked = EXCLUDED.opened_tracked, clicked_tracked = EXCLUDED.clicked_tracked,
    replied = EXCLUDED.replied, bounced = EXCLUDED.bounced,
    unsubscribed = EXCLUDED.unsubscribed, spam_complaints = EXCLUDED.spam_complaints,
    refreshed_at = now()
""")
SNAPSHOT = sa.text("""
SELECT tenant_id, date, campaign_id, sent, delivered, opened_tracked, clicked_tracked, replied,
    bounced, unsubscribed, spam_complaints
FROM analytics.campaign_analytics
ORDER BY tenant_id, date, campaign_id NULLS FIRST
""")


def run_raw(engine: sa.Engine, size: DemoSize) -> None:
    lo = dt.datetime.combine(size.first_day, dt.time(), dt.UTC)
    hi = dt.datetime.combine(size.last_day + dt.timedelta(days=1), dt.time(), dt.UTC)
    with engine.begin() as conn:
        conn.execute(
            RAW_DELETE,
            {"tenants": size.tenant_ids(), "first": size.first_day, "last": size.last_day},
        )
        conn.execute(RAW_INSERT, {"tenants": size.tenant_ids(), "lo": lo, "hi": hi})


def run_seed(engine: sa.Engine, partitions: list[TenantDay]) -> None:
    with engine.connect() as conn:
        for p in partitions:
            rows = conn.execute(SEED_QUERY, {"tenant": p.tenant_id, "day": p.day}).all()
            for row in rows:
                params = {"tenant": p.tenant_id, "day": p.day, "campaign": row[0]}
                params.update({f"m{i}": v for i, v in enumerate(row[1:])})
                conn.execute(SEED_UPSERT, params)
                conn.commit()  # the seed awaited each upsert on its own


def run_dagster(url: str, size: DemoSize, dagster_url: str) -> float:
    import shutil

    import dagster as dg

    from analytics_pipeline.partitions import add_tenants, range_tags

    os.environ["OLTP_DATABASE_URL"] = url
    os.environ["DAGSTER_PG_URL"] = (
        sa.make_url(dagster_url)
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    from analytics_pipeline.definitions import defs

    with tempfile.TemporaryDirectory() as home:
        shutil.copyfile(
            Path(__file__).resolve().parents[1] / "dagster.yaml", Path(home) / "dagster.yaml"
        )
        with dg.DagsterInstance.from_config(home) as instance:
            add_tenants(instance, size.tenant_ids())
            tags = range_tags(
                TenantDay(size.tenant_ids()[0], size.first_day),
                TenantDay(size.tenant_ids()[-1], size.last_day),
            )
            started = time.perf_counter()
            defs.resolve_job_def("refresh_analytics").execute_in_process(
                instance=instance,
                tags=tags,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
            return time.perf_counter() - started


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--emails-per-day", type=int, default=5556)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--seed-approach",
        choices=["full", "sample", "skip"],
        default="full",
        help="time the seed's approach on every partition, a sample, or not",
    )
    parser.add_argument("--dagster", action="store_true", help="also time the full Dagster run")
    parser.add_argument(
        "--all-tables",
        action="store_true",
        help="also time a rebuild of all seven tables against their raw SQL",
    )
    args = parser.parse_args()
    size = DemoSize(
        tenants=args.tenants,
        days=args.days,
        emails_per_day=args.emails_per_day,
        seed=args.seed,
        end_date=dt.date(2026, 6, 30),
    )
    name = f"ap_bench_{args.tenants}x{args.days}x{args.emails_per_day}_s{args.seed}"
    data = load_dataset(name, size)
    url = data.url
    engine = sa.create_engine(url)
    print(f"data: database {name}: {data.counts['emails']:,} emails ({data.how})")

    partitions = [
        TenantDay(t, size.first_day + dt.timedelta(days=i))
        for t in size.tenant_ids()
        for i in range(size.days)
    ]
    oltp, olap = OltpDatabase(url=url), OlapDatabase(url=url)

    def pipeline() -> None:
        refresh(CAMPAIGN_ANALYTICS, partitions, oltp=oltp, olap=olap, run_id="bench")

    run_raw(engine, size)  # warm the cache for everyone alike
    results: dict[str, list[float]] = {}
    # Interleave raw and pipeline so that drift on the machine affects both alike.
    for _ in range(args.repeats):
        results.setdefault("raw", []).extend(timed(lambda: run_raw(engine, size), 1))
        results.setdefault("pipeline", []).extend(timed(pipeline, 1))
    with engine.connect() as conn:
        reference = conn.execute(SNAPSHOT).all()
    run_raw(engine, size)
    with engine.connect() as conn:
        assert conn.execute(SNAPSHOT).all() == reference, "raw and pipeline rows differ"

    seed_scale = 1.0
    if args.seed_approach != "skip":
        sample = partitions
        if args.seed_approach == "sample":
            sample = partitions[:: max(1, len(partitions) // 50)]
            seed_scale = len(partitions) / len(sample)
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE analytics.campaign_analytics"))
        results["seed"] = [t * seed_scale for t in timed(lambda: run_seed(engine, sample), 1)]
        if args.seed_approach == "full":
            with engine.connect() as conn:
                assert conn.execute(SNAPSHOT).all() == reference, "seed and pipeline rows differ"

    if args.dagster:
        dagster_url = database(name + "_dagster")
        results["dagster"] = [run_dagster(url, size, dagster_url)]

    raw = statistics.median(results["raw"])
    print(
        f"range: {len(partitions):,} partitions ({args.tenants} tenants x {args.days} days), "
        f"{len(reference):,} output rows; median of {args.repeats} where repeated"
    )
    for label, times in results.items():
        med = statistics.median(times)
        note = " (extrapolated from a sample)" if label == "seed" and seed_scale != 1 else ""
        print(
            f"  {label:<9} {med:8.2f}s   {med / raw:6.2f}x raw{note}   runs: "
            + ", ".join(f"{t:.2f}" for t in times)
        )
    pipe = statistics.median(results["pipeline"])
    print(f"pipeline / raw = {pipe / raw:.2f} (target <= 1.25)")
    if "seed" in results:
        print(f"seed / pipeline = {statistics.median(results['seed']) / pipe:.1f} (target >= 10)")
    if "dagster" in results:
        steps = len(partitions) * len(REGISTRY)
        print(
            f"dagster run = {results['dagster'][0]:.2f}s for all {len(REGISTRY)} assets: "
            f"{results['dagster'][0] / steps * 1000:.1f} ms per (partition, asset), rollups "
            "included; subtract the all-tables pipeline total for Dagster's own share"
        )
    if args.all_tables:
        all_tables(engine, partitions, oltp, olap, args.repeats)
    engine.dispose()
    oltp.dispose()
    olap.dispose()
    return 0


def raw_rollup_sql(conn: sa.Connection, rollup, params: dict) -> None:
    """The rollup's own DELETE and INSERT ... SELECT, executed with nothing around them."""
    w = Windows()
    delete = sa.delete(rollup.table).where(
        w.contains_day(rollup.table.c.tenant_id, rollup.table.c.date)
    )
    insert = sa.insert(rollup.table).from_select(
        [c.name for c in rollup.output_columns], rollup.select(Windows())
    )
    conn.execute(delete, params)
    conn.execute(insert, params)


def all_tables(engine, partitions, oltp, olap, repeats: int) -> None:
    params = window_params(to_windows(partitions))
    with engine.connect() as conn:
        sizes = {
            t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar()
            for t in (
                "emails",
                "leads",
                "warmup_emails",
                "invoices",
                "subscriptions",
                "admin_actions",
            )
        }
    print(
        "all seven tables, full rebuild of the range; sources: "
        + ", ".join(f"{k} {v:,}" for k, v in sizes.items())
    )
    totals = {"raw-sql": 0.0, "pipeline": 0.0}
    for rollup in REGISTRY:
        runs: dict[str, list[float]] = {"raw-sql": [], "pipeline": []}
        for _ in range(repeats):
            with engine.begin() as conn:
                conn.execute(sa.delete(rollup.table))  # append-only tables: start empty
            started = time.perf_counter()
            with engine.begin() as conn:
                raw_rollup_sql(conn, rollup, params)
            runs["raw-sql"].append(time.perf_counter() - started)
            with engine.begin() as conn:
                conn.execute(sa.delete(rollup.table))
            started = time.perf_counter()
            result = refresh(rollup, partitions, oltp=oltp, olap=olap, run_id="bench")
            runs["pipeline"].append(time.perf_counter() - started)
        raw, pipe = (statistics.median(runs[k]) for k in ("raw-sql", "pipeline"))
        totals["raw-sql"] += raw
        totals["pipeline"] += pipe
        print(
            f"  {rollup.name:<24} rows {result.rows_written:>8,}   raw-sql {raw:7.2f}s   "
            f"pipeline {pipe:7.2f}s   {pipe / raw:5.2f}x"
        )
    print(
        f"  {'all seven':<24} {'':>13}   raw-sql {totals['raw-sql']:7.2f}s   "
        f"pipeline {totals['pipeline']:7.2f}s   {totals['pipeline'] / totals['raw-sql']:5.2f}x "
        "(target <= 1.25)"
    )


if __name__ == "__main__":
    sys.exit(main())
