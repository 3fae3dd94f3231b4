"""`analytics-pipeline`, the project's command line: its entry point, `main`.

`main` parses the arguments (cli/parser.py), sets up logging and runs the command (cli/commands.py,
cli/dev.py, cli/events.py). An operator's error (a bad setting, a database that cannot be
reached) becomes one line on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable

import sqlalchemy as sa

from analytics_pipeline.cli.parser import build_parser
from analytics_pipeline.errors import AnalyticsPipelineError, ConfigurationError


def main(argv: list[str] | None = None) -> int:
    """Run `analytics-pipeline` with `argv` (default: the process's); the exit code."""
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
    from analytics_pipeline.embedded.signals import install_sigterm_handler

    install_sigterm_handler()
    command: Callable[[argparse.Namespace], int] = args.func
    try:
        return command(args)
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


__all__ = ["build_parser", "database_problem", "main"]
