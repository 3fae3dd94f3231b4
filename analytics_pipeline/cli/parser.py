"""The arguments of `analytics-pipeline`: its subcommands, their options, and its --help."""

from __future__ import annotations

import argparse
import datetime as dt

from analytics_pipeline.cli.commands import (
    cmd_backfill,
    cmd_demo,
    cmd_embedded,
    cmd_generate,
    cmd_migrate,
    cmd_tenant,
)
from analytics_pipeline.cli.dev import cmd_dev
from analytics_pipeline.cli.events import cmd_events
from analytics_pipeline.settings.registry import USER

# --help's description.
USAGE = """`analytics-pipeline`: the project's command line.

analytics-pipeline demo       load demo data and run the main job on it (embedded by default)
analytics-pipeline dev        the Dagster UI and daemon (`dagster dev`) on the same databases
analytics-pipeline migrate    create or upgrade the OLAP `analytics` schema
analytics-pipeline generate   load the synthetic dataset into OLTP (size knobs, seed)
analytics-pipeline embedded   status / stop of the embedded PostgreSQL
analytics-pipeline events     status / deliver of the event outbox (undelivered PostHog events)
analytics-pipeline tenant     erase ID: forget an offboarded tenant everywhere the pipeline keeps it
"""


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


def _workers(text: str) -> int:
    """--workers: a whole number >= 1 (refused by argparse before anything starts)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of worker processes: give a whole number >= 1 "
            "(1 runs the runs one after another in this process)"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; each subcommand's `func` runs it."""
    parser = argparse.ArgumentParser(
        prog="analytics-pipeline",
        description=USAGE,
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
    p.add_argument(
        "--workers",
        type=_workers,
        default=2,
        help="runs executed at once, each in a process of its own (default 2: one run keeps "
        "about one core busy; 1 runs them one after another in this process)",
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
        default=USER.read(),
        help="who asked for it, kept in analytics.erasures (default: $USER)",
    )
    p.set_defaults(func=cmd_tenant)
    return parser
