"""`analytics-pipeline`: the project's command line.

analytics-pipeline demo       load demo data and run the main job on it (embedded by default)
analytics-pipeline dev        the Dagster UI and daemon (`dagster dev`) on the same databases
analytics-pipeline migrate    create or upgrade the OLAP `analytics` schema
analytics-pipeline generate   load the synthetic dataset into OLTP (size knobs, seed)
analytics-pipeline embedded   status / stop of the embedded PostgreSQL
analytics-pipeline events     status / deliver of the event outbox (undelivered PostHog events)
analytics-pipeline tenant     erase ID: forget an offboarded tenant everywhere the pipeline keeps it
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.errors import AnalyticsPipelineError, ConfigurationError


def _size_args(p: argparse.ArgumentParser, *, tenants: int, days: int, per_day: int) -> None:
    p.add_argument("--tenants", type=int, default=tenants, help=f"tenants (default {tenants})")
    p.add_argument("--days", type=int, default=days, help=f"days of history (default {days})")
    p.add_argument(
        "--emails-per-day",
        type=int,
        default=per_day,
        help=f"average emails per tenant per day (default {per_day})",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.add_argument(
        "--end-date",
        type=dt.date.fromisoformat,
        default=None,
        help="last UTC day with data, YYYY-MM-DD (default: yesterday)",
    )


def _size(args: argparse.Namespace):
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
    from analytics_pipeline.demo.loader import load_demo
    from analytics_pipeline.history import record_partitions_start
    from analytics_pipeline.progress import reporting
    from analytics_pipeline.runtime import environment

    size = _size(args)
    record_partitions_start(size.first_day)
    with environment(need_dagster_home=False) as settings:
        engine = sa.create_engine(settings.oltp_loader_url)
        started = time.perf_counter()
        with (
            engine.begin() as conn,
            reporting("OLTP load", size.tenants, "tenants") as progress,
        ):
            report = load_demo(conn, size, on_tenant=lambda rows: progress.advance(1, rows))
        engine.dispose()
    if report is None:
        print("that dataset is already loaded; nothing to do")
    else:
        rows = ", ".join(f"{k} {v:,}" for k, v in report.rows.items())
        print(f"loaded in {time.perf_counter() - started:.1f}s: {rows}")
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from analytics_pipeline.history import record_start_from_oltp
    from analytics_pipeline.runtime import environment
    from analytics_pipeline.warehouse.migrate import upgrade_database

    with environment(need_dagster_home=False) as settings:
        record_start_from_oltp(settings.oltp_url)
        done = upgrade_database(settings.olap_url)
    print("\n".join(done) if done else "the OLAP schema is up to date")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    import dagster as dg

    from analytics_pipeline.history import record_start_from_oltp
    from analytics_pipeline.runtime import WORKSPACE_YAML, environment, project_file, state_home
    from analytics_pipeline.settings import HOME_ENV
    from analytics_pipeline.sources.schema import NO_TABLES_YET
    from analytics_pipeline.tenants import register_oltp_tenants
    from analytics_pipeline.warehouse.migrate import upgrade_database

    workspace = project_file(WORKSPACE_YAML)
    with environment() as settings:
        # Read by the Dagster processes this starts, when they define the partitions.
        record_start_from_oltp(settings.oltp_url)
        upgrade_database(settings.olap_url)
        synced = register_oltp_tenants(settings.oltp_url, dg.DagsterInstance.get())
        if synced is None:
            print(NO_TABLES_YET, file=sys.stderr)
        else:
            for tenant_id, why in synced.invalid.items():
                print(f"skipped tenant {tenant_id!r}: {why}", file=sys.stderr)
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", str(workspace), *args.dagster_args]
        children: list[subprocess.Popen] = []

        def _forward(signum: int, _frame: object) -> None:
            # dagster dev stops cleanly on SIGINT (as on Ctrl-C), whichever signal we got.
            for child in children:
                child.send_signal(signal.SIGINT)

        # Installed before the child starts: a handled signal is reset to its default in the
        # child, whereas an ignored one (SIGINT in a background job) would stay ignored there
        # and make dagster dev deaf to SIGTERM and Ctrl-C alike.
        signal.signal(signal.SIGTERM, _forward)
        signal.signal(signal.SIGINT, _forward)
        # From Dagster's home (which holds the copy of dagster.yaml): dagster dev warns that a
        # dagster.yaml in its working folder "will not be used" whenever the two differ.
        dagster_home = os.environ["DAGSTER_HOME"]
        os.environ[HOME_ENV] = str(state_home())
        children.append(subprocess.Popen(cmd, cwd=dagster_home))
        # Leaving the `with` stops the embedded server, once dagster dev has exited.
        return children[0].wait()


def cmd_backfill(args: argparse.Namespace) -> int:
    import dagster as dg

    from analytics_pipeline.automation.backfill import plan_backfill, run_backfill
    from analytics_pipeline.names import REFRESH_JOB
    from analytics_pipeline.runtime import environment

    with environment():
        from analytics_pipeline.definitions import defs

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
        runs = run_backfill(instance, defs.resolve_job_def(REFRESH_JOB), plans)
    return 0 if all(r.success for r in runs) else 1


def cmd_embedded(args: argparse.Namespace) -> int:
    from analytics_pipeline.embedded.server import EmbeddedPostgres
    from analytics_pipeline.runtime import state_home

    server = EmbeddedPostgres(state_home() / "postgres")
    if args.action == "status":
        print(f"{'running' if server.is_running() else 'not running'} ({server.data})")
    elif args.action == "stop":
        print("stopped" if server.force_stop() else "was not running")
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    from analytics_pipeline.tracking import EventTracker, TrackingConfig
    from analytics_pipeline.tracking.outbox import Outbox

    config = TrackingConfig.from_env()
    if config.sends:
        print(f"events: sent to {config.host} (environment {config.environment})")
    else:
        print(
            f"events: log-only (environment {config.environment}; sending needs "
            "ANALYTICS_ENV=production and POSTHOG_API_KEY)"
        )
    if not config.outbox_path.exists():
        print(f"outbox {config.outbox_path}: none (nothing was ever undelivered)")
        return 0
    outbox = Outbox(config.outbox_path)
    count, oldest, error = outbox.summary()
    rejected = len(outbox.rejected())
    outbox.close()
    age = (
        f", oldest since {dt.datetime.fromtimestamp(oldest, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        if oldest
        else ""
    )
    print(f"outbox {config.outbox_path}: {count} undelivered event(s){age}")
    if error:
        print(f"last error: {error}")
    if rejected:
        print(
            f"{rejected} event(s) PostHog refused for what they are (table `rejected`, with the "
            "reason): not retried; fix the call site, the events are kept for inspection"
        )
    if args.action == "status" or count == 0:
        return 0
    if not config.sends:
        raise ConfigurationError(
            "cannot deliver: set ANALYTICS_ENV=production and POSTHOG_API_KEY to send the outbox"
        )
    tracker = EventTracker(config)
    deadline = time.monotonic() + args.timeout
    while tracker.pending_in_outbox() and time.monotonic() < deadline:
        time.sleep(0.5)
    tracker.shutdown()
    left = tracker.pending_in_outbox()
    print(f"delivered {count - left}, {left} left")
    return 0 if left == 0 else 1


def cmd_tenant(args: argparse.Namespace) -> int:
    from analytics_pipeline.governance.cli import erase_command

    return erase_command(args.tenant_id, args.requested_by)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analytics-pipeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="load demo data and materialize every demo partition")
    _size_args(p, tenants=5, days=90, per_day=700)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("generate", help="load synthetic OLTP data (COPY), deterministic by seed")
    _size_args(p, tenants=5, days=90, per_day=700)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("migrate", help="create or upgrade the OLAP analytics schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("dev", help="run `dagster dev` (UI and daemon) on the project's databases")
    p.add_argument(
        "dagster_args", nargs=argparse.REMAINDER, help="passed to dagster dev, e.g. -- -p 3001"
    )
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("backfill", help="rebuild a tenant x date range: a few runs per asset group")
    p.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first day")
    p.add_argument("--end", type=dt.date.fromisoformat, required=True, help="last day")
    p.add_argument("--tenants", help="comma-separated tenant ids (default: all registered)")
    p.add_argument("--group", action="append", help="asset group (repeatable; default: all)")
    p.add_argument("--table", action="append", help="OLAP table (repeatable; default: all)")
    p.add_argument(
        "--max-partitions-per-run",
        type=int,
        default=None,
        help="cut longer ranges into runs of at most this many partitions (default 50,000: "
        "automation/backfill.py)",
    )
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("embedded", help="the embedded PostgreSQL server")
    p.add_argument("action", choices=["status", "stop"])
    p.set_defaults(func=cmd_embedded)

    p = sub.add_parser("events", help="the outbox of PostHog events not delivered yet")
    p.add_argument("action", choices=["status", "deliver"])
    p.add_argument(
        "--timeout", type=float, default=60, help="deliver: seconds to keep trying (default 60)"
    )
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("tenant", help="tenant lifecycle: erase an offboarded tenant")
    p.add_argument("action", choices=["erase"])
    p.add_argument("tenant_id", help="the tenant's id (its partition key)")
    p.add_argument(
        "--requested-by",
        default=os.environ.get("USER", ""),
        help="who asked for it, kept in analytics.erasures (default: $USER)",
    )
    p.set_defaults(func=cmd_tenant)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "dagster_args", None) and args.dagster_args[0] == "--":
        args.dagster_args = args.dagster_args[1:]
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    # On the handler too: Dagster raises its managed loggers (dagster.yaml python_logs, e.g. the
    # event tracker's) to INFO, and their records would otherwise reach the terminal.
    for handler in logging.getLogger().handlers:
        handler.setLevel(level)
    if not args.verbose:
        warnings.filterwarnings("ignore", module="dagster")
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "1000")
    from analytics_pipeline.embedded.server import install_sigterm_handler

    install_sigterm_handler()
    try:
        return args.func(args)
    except (AnalyticsPipelineError, ConfigurationError) as exc:
        print(f"analytics-pipeline: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        problem = database_problem(exc)
        if problem is None:
            raise
        # A database that cannot be reached (or refuses us) is an operator's problem, not a
        # bug: one line saying which and what to do, as for any other bad setting.
        print(f"analytics-pipeline: error: {problem}", file=sys.stderr)
        return 2


def database_problem(exc: BaseException) -> str | None:
    """The one-line message for a connection failure anywhere in `exc`'s chain, else None."""
    import psycopg

    from analytics_pipeline.resources.connection_errors import connection_problem

    connection_errors = (
        sa.exc.OperationalError,
        sa.exc.InterfaceError,
        psycopg.OperationalError,
        psycopg.InterfaceError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, connection_errors):
            return (
                f"cannot use the database: {connection_problem(seen)}. Check that the server "
                "runs and that OLTP_DATABASE_URL, OLAP_DATABASE_URL and DAGSTER_PG_URL are right"
            )
        seen = seen.__cause__ or seen.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())
