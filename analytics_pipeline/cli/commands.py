"""The bodies of `analytics-pipeline`'s commands; `dev` and `events` have modules of their own.

Each imports what it needs when it runs, so a bad argument is refused before Dagster's slow
imports (or the embedded server's start).
"""

from __future__ import annotations

import argparse
import datetime as dt
from typing import TYPE_CHECKING

from analytics_pipeline.errors import ConfigurationError

if TYPE_CHECKING:
    import dagster as dg

    from analytics_pipeline.demo.size import DemoSize


def _size(args: argparse.Namespace) -> DemoSize:
    # demo.size, not demo.generator: a bad size is refused before anything slow is imported.
    from analytics_pipeline.demo.size import DemoSize

    return DemoSize(
        tenants=args.tenants,
        days=args.days,
        emails_per_day=args.emails_per_day,
        seed=args.seed,
        end_date=args.end_date,
    )


def cmd_demo(args: argparse.Namespace) -> int:
    """Load demo data and run the main job on it (embedded PostgreSQL by default)."""
    # Checked before the slow start-up (Dagster's imports, the embedded server), and before
    # anything is recorded.
    size = _size(args)
    today = dt.datetime.now(dt.UTC).date()
    if size.last_day > today:
        raise ConfigurationError(
            f"the demo (--days, --end-date) ends on {size.last_day}, after the last partition "
            f"{today} (today, UTC): pick an --end-date up to today"
        )
    from analytics_pipeline.history import record_partitions_start

    # Before anything defines the partitions: the date dimension starts where the data starts,
    # so the demo's first day always has a partition.
    record_partitions_start(size.first_day)
    from analytics_pipeline.demo.run import run_demo
    from analytics_pipeline.runtime import environment

    with environment() as settings:
        run_demo(settings, size, log_level="DEBUG" if args.verbose else "WARNING")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    """Load the synthetic dataset into OLTP (COPY), deterministic by seed."""
    from analytics_pipeline.demo.loader import load_demo_at
    from analytics_pipeline.history import record_partitions_start
    from analytics_pipeline.runtime import environment

    size = _size(args)
    record_partitions_start(size.first_day)
    with environment(need_dagster_home=False) as settings:
        report, seconds = load_demo_at(settings.oltp_loader_url, size)
    if report is None:
        print("that dataset is already loaded; nothing to do")
    else:
        print(f"loaded in {seconds:.1f}s: {report.counts()}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Create or upgrade the OLAP `analytics` schema."""
    from analytics_pipeline.history import record_start_from_oltp
    from analytics_pipeline.runtime import environment
    from analytics_pipeline.warehouse.migrate import upgrade_database

    with environment(need_dagster_home=False) as settings:
        record_start_from_oltp(settings.oltp_url)
        done = upgrade_database(settings.olap_url)
    print("\n".join(done) if done else "the OLAP schema is up to date")
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Rebuild a tenant x date range in a few runs per asset group; 1 if one failed."""
    import dagster as dg

    from analytics_pipeline.automation.backfill import plan_backfill, run_backfill
    from analytics_pipeline.runtime import environment

    with environment():
        # The Definitions first: bad settings are refused before a tenant is registered.
        refresh_job()
        instance = dg.DagsterInstance.get()
        plans = plan_backfill(
            instance,
            first_day=args.start,
            last_day=args.end,
            tenants=[t for t in (args.tenants or "").split(",") if t] or None,
            groups=args.group or (),
            tables=args.table or (),
            **(
                {"max_partitions": args.max_partitions_per_run}
                if args.max_partitions_per_run is not None
                else {}
            ),
        )
        runs = run_backfill(instance, refresh_job, plans, workers=args.workers)
    return 0 if all(r.success for r in runs) else 1


def refresh_job() -> dg.JobDefinition:
    """The refresh job of the project's Definitions (what a backfill worker process runs)."""
    from analytics_pipeline.definitions import defs
    from analytics_pipeline.names import REFRESH_JOB

    return defs.resolve_job_def(REFRESH_JOB)


def cmd_embedded(args: argparse.Namespace) -> int:
    """Status of the embedded PostgreSQL, or stop it (whoever owns it)."""
    from analytics_pipeline.embedded.server import EmbeddedPostgres
    from analytics_pipeline.runtime import state_home

    server = EmbeddedPostgres(state_home() / "postgres")
    if args.action == "status":
        print(f"{'running' if server.is_running() else 'not running'} ({server.data})")
    elif args.action == "stop":
        print("stopped" if server.force_stop() else "was not running")
    return 0


def cmd_tenant(args: argparse.Namespace) -> int:
    """Erase an offboarded tenant everywhere the pipeline keeps it."""
    from analytics_pipeline.governance.cli import erase_command

    return erase_command(args.tenant_id, args.requested_by)
