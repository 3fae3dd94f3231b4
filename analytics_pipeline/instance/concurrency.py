"""A pool's first claim, made safe when two runs make it at once.

Dagster 1.13 creates a pool's `concurrency_limits` row lazily, on the first claim of a slot: it
INSERTs the row in a transaction and, on a duplicate key (another run inserted it first),
catches the IntegrityError and UPDATEs. On PostgreSQL the failed INSERT has already aborted the
transaction, so the UPDATE raises `InFailedSqlTransaction` and the run that lost the race fails
(seen here: two backfill runs claiming `oltp` on a fresh instance). One `INSERT ... ON CONFLICT`
does the same work atomically. Relies on Dagster's internals (the method, its tables and
helpers): `test_instance_concurrency.py` pins the stock method's source and shows the race.
"""

from __future__ import annotations

from typing import Any

from dagster._core.storage.event_log.schema import ConcurrencyLimitsTable
from sqlalchemy.dialects import postgresql


class SafePoolInitialization:
    """Mixin for a PostgreSQL SqlEventLogStorage: the default-limit initialization as one
    statement. Anything this does not cover is Dagster's own method."""

    def initialize_concurrency_limit_to_default(self, concurrency_key: str) -> bool:
        stock: Any = super()
        storage: Any = self
        if not (
            storage.has_concurrency_limits_table
            and storage.has_instance
            and storage.has_default_pool_limit_col
        ):
            return bool(stock.initialize_concurrency_limit_to_default(concurrency_key))
        default_limit = storage._instance.global_op_concurrency_default_limit
        if default_limit is None:  # a delete: no insert, no race
            return bool(stock.initialize_concurrency_limit_to_default(concurrency_key))
        storage._reconcile_concurrency_limits_from_slots()
        table = ConcurrencyLimitsTable
        insert = postgresql.insert(table).values(
            concurrency_key=concurrency_key, limit=default_limit, using_default_limit=True
        )
        # As the stock path: an existing row takes the default limit unless it already has it.
        upsert = insert.on_conflict_do_update(
            index_elements=[table.c.concurrency_key],
            set_={"limit": default_limit},
            where=table.c.limit != default_limit,
        )
        with storage.index_transaction() as conn:
            conn.execute(upsert)
            storage._allocate_concurrency_slots(conn, concurrency_key, default_limit)
        return True
