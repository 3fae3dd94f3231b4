"""The README's main job: demo data in, every demo partition materialized, a summary out."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa
from dagster._core.utils import make_new_run_id

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.demo.loader import load_demo_at
from analytics_pipeline.errors import AnalyticsPipelineError
from analytics_pipeline.instance.run_health import local_run_tags, reap_dead_runs
from analytics_pipeline.names import REFRESH_JOB
from analytics_pipeline.partitions import TENANTS_PARTITIONS_NAME, TenantDay, range_tags
from analytics_pipeline.progress import watching_run
from analytics_pipeline.rollups.schema import SCHEMA
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.settings import DatabaseSettings, Settings
from analytics_pipeline.settings.registry import DAGSTER_HOME
from analytics_pipeline.tenants import register_oltp_tenants
from analytics_pipeline.warehouse.migrate import upgrade_database
from analytics_pipeline.wiring import build_definitions

MAIN_JOB = REFRESH_JOB


@dataclass(frozen=True)
class DemoOutcome:
    run_id: str
    partitions: int
    summary: list[str]


def run_demo(
    settings: DatabaseSettings,
    size: DemoSize,
    echo: Callable[[str], None] = print,
    log_level: str = "WARNING",
) -> DemoOutcome:
    """Load the demo data, register its tenants, and materialize all its partitions in one run.

    The Definitions are built from the settings as the command resolved them (`settings` and the
    URLs it exported), not from whatever the environment held when this module was imported.
    """
    defs = build_definitions(Settings.from_env())
    oltp_engine = sa.create_engine(settings.oltp_url)
    olap_engine = sa.create_engine(settings.olap_url)
    try:
        report, seconds = load_demo_at(settings.oltp_loader_url, size)
        if report is None:
            echo(f"OLTP: demo dataset already loaded (seed {size.seed}), reusing it")
        else:
            echo(f"OLTP: loaded in {seconds:.1f}s: {report.counts()}")
        for line in upgrade_database(settings.olap_url):
            echo(f"OLAP: {line}")

        instance = dg.DagsterInstance.get()
        synced = register_oltp_tenants(settings.oltp_url, instance)
        if synced is None:  # the load above creates the tables: only a concurrent drop gets here
            raise AnalyticsPipelineError("OLTP has no tables after the demo load; run it again")
        for tenant_id, why in synced.invalid.items():
            echo(f"skipped tenant {tenant_id!r}: {why}")
        ordered = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
        echo(f"Dagster: {len(synced.added)} new tenant partition(s), {len(ordered)} in all")
        demo_tenants = set(size.tenant_ids())
        in_range = [t for t in ordered if t in demo_tenants]
        if not in_range:
            raise AnalyticsPipelineError("no demo tenant is registered as a partition; see above")
        # The data's days and the day after, the data's "today" (no data yet; today's partition
        # when --end-date is the default): every partition of the demo tenants, none missing.
        end_day = min(size.last_day + dt.timedelta(days=1), dt.datetime.now(dt.UTC).date())
        days = (end_day - size.first_day).days + 1
        first = TenantDay(in_range[0], size.first_day)
        last = TenantDay(in_range[-1], end_day)
        tags = {**range_tags(first, last), **local_run_tags()}
        reap_dead_runs(instance, echo)
        started = time.perf_counter()
        span = ordered.index(last.tenant_id) - ordered.index(first.tenant_id) + 1
        partitions = span * days
        run_id = make_new_run_id()
        with watching_run(instance, run_id, "Dagster run", partitions * len(REGISTRY)):
            result = defs.get_job_def(MAIN_JOB).execute_in_process(
                instance=instance,
                run_id=run_id,
                tags=tags,
                raise_on_error=True,
                # The run's full event log is in the Dagster UI; the terminal gets the summary.
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            )
        seconds = time.perf_counter() - started
        echo(
            f"Dagster run {result.run_id}: {partitions:,} partitions "
            f"({span} tenants x {days} days, {size.first_day}..{end_day}) "
            f"in {seconds:.1f}s"
        )
        summary = _summary(oltp_engine, olap_engine, size)
        for line in summary:
            echo(line)
        return DemoOutcome(run_id=result.run_id, partitions=partitions, summary=summary)
    finally:
        oltp_engine.dispose()
        olap_engine.dispose()


def _summary(oltp_engine: sa.Engine, olap_engine: sa.Engine, size: DemoSize) -> list[str]:
    lo = dt.datetime.combine(size.first_day, dt.time(), dt.UTC)
    hi = dt.datetime.combine(size.last_day + dt.timedelta(days=1), dt.time(), dt.UTC)
    with oltp_engine.connect() as conn:
        sent = conn.execute(
            sa.text("SELECT count(*) FROM emails WHERE sent_at >= :lo AND sent_at < :hi"),
            {"lo": lo, "hi": hi},
        ).scalar()
    t = CAMPAIGN_ANALYTICS.table
    in_demo = t.c.date.between(size.first_day, size.last_day)
    with olap_engine.connect() as conn:
        rows, total, tenants = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(t.c.sent), 0),
                sa.func.count(sa.distinct(t.c.tenant_id)),
            ).where(in_demo)
        ).one()
        top = conn.execute(
            sa.select(
                t.c.tenant_id,
                *(
                    sa.func.sum(c)
                    for c in (t.c.sent, t.c.delivered, t.c.opened_tracked, t.c.replied)
                ),
            )
            .where(in_demo)
            .group_by(t.c.tenant_id)
            .order_by(t.c.tenant_id)
        ).all()
    check = "matches" if total == sent else "DOES NOT MATCH"
    lines = [
        f"{SCHEMA}.campaign_analytics: {rows:,} rows for {tenants} tenants; "
        f"{total:,} emails counted, {check} the {sent:,} sent emails in OLTP",
        "tenant        sent   delivered   opened  replied",
    ]
    lines += [f"{t:<10} {s:>8,} {d:>10,} {o:>8,} {r:>8,}" for t, s, d, o, r in top]
    with olap_engine.connect() as conn:
        for rollup in REGISTRY:
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(rollup.table)
                .where(rollup.table.c.date.between(size.first_day, size.last_day))
            ).scalar()
            lines.append(f"{SCHEMA}.{rollup.name}: {n:,} rows")
    lines.append("Open the Dagster UI on this data: analytics-pipeline dev")
    dagster_home = DAGSTER_HOME.read()
    if dagster_home:
        lines.append(f"(Dagster home: {dagster_home})")
    return lines
