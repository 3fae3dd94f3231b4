"""A pool's first claim by two runs at once (instance/concurrency.py).

Why: on a fresh instance, two runs claiming the `oltp` pool at the same moment both try to
create its limit row; on Dagster's stock PostgreSQL storage the loser's transaction is aborted
by the duplicate key and the run fails (a backfill after two killed runs hit it). The race is
made deterministic here: the row is inserted, uncommitted, by another transaction, so the claim
blocks on it exactly as the losing run does, and the insert commits while it waits.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

from analytics_pipeline_tests.testbed import STOCK_DAGSTER_YAML, wait_until

ROOT = Path(__file__).resolve().parents[1]
STOCK = (
    STOCK_DAGSTER_YAML
    + """
concurrency:
  pools:
    default_limit: 2
"""
)
# Dagster 1.13.27's method that instance/concurrency.py replaces. A new source means Dagster
# changed it: read the new one, and drop the override if the race is fixed there.
STOCK_SOURCE_SHA256 = "6d44fe17c895aa2967a08ba788d0ba6b35d7c2488e31dbab20dbcfcb2d2c0d7d"


def test_the_replaced_stock_method_is_the_one_pinned():
    """Guard: fails on a Dagster upgrade that changes the method the override replaces."""
    source = inspect.getsource(SqlEventLogStorage.initialize_concurrency_limit_to_default)
    assert hashlib.sha256(source.encode()).hexdigest() == STOCK_SOURCE_SHA256


def _waiting_on_a_lock(engine: sa.Engine) -> int:
    # A connection of its own each time: pg_stat_activity is a snapshot per transaction.
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def _claim_while_another_run_creates_the_row(
    yaml: str, fresh_instance_home: Callable[[str, str], tuple[str, Path]], name: str
) -> tuple[BaseException | None, list[tuple[str, int]], int]:
    url, home = fresh_instance_home(yaml, name)
    engine = sa.create_engine(url)
    outcome: list[BaseException | None] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        with engine.connect() as other:
            other.execute(
                sa.text(
                    'INSERT INTO concurrency_limits (concurrency_key, "limit", '
                    "using_default_limit) VALUES ('oltp', 2, true)"
                )
            )  # uncommitted: the other run is between its insert and its commit

            def claim() -> None:
                try:
                    storage.initialize_concurrency_limit_to_default("oltp")
                    outcome.append(None)
                except BaseException as exc:
                    outcome.append(exc)

            claimer = threading.Thread(target=claim)
            claimer.start()
            wait_until(
                lambda: _waiting_on_a_lock(engine) == 1,
                timeout=120,
                what="the claim to wait on the other run's row",
            )
            other.commit()
            claimer.join(timeout=120)
        with engine.connect() as conn:
            limits = [
                tuple(r)
                for r in conn.execute(
                    sa.text('SELECT concurrency_key, "limit" FROM concurrency_limits')
                )
            ]
            slots = conn.execute(
                sa.text("SELECT count(*) FROM concurrency_slots WHERE concurrency_key = 'oltp'")
            ).scalar_one()
    engine.dispose()
    assert outcome, "the claim did not finish"
    return outcome[0], limits, slots


def test_a_claim_racing_another_runs_first_claim_succeeds(fresh_instance_home):
    """On the project's storage the losing claim succeeds and the pool has its 2 slots."""
    error, limits, slots = _claim_while_another_run_creates_the_row(
        (ROOT / "dagster.yaml").read_text(), fresh_instance_home, "pool_ours"
    )
    assert error is None, repr(error)
    assert limits == [("oltp", 2)]
    assert slots == 2


def test_on_stock_storage_the_same_claim_fails(fresh_instance_home):
    """The bug the override exists for, on Dagster's own storage: the claim that lost the race
    fails on its aborted transaction. If this starts passing, Dagster fixed it."""
    error, limits, _ = _claim_while_another_run_creates_the_row(
        STOCK, fresh_instance_home, "pool_stock"
    )
    assert error is not None
    assert "InFailedSqlTransaction" in repr(error) or "aborted" in str(error), repr(error)
    assert limits == [("oltp", 2)]
