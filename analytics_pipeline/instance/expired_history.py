"""Retention in the Dagster instance: deleting the events of partitions past their cutoff.

Dagster cannot drop single partitions' history (`wipe_asset_partitions` is not implemented for
SQL storage, and would log an ASSET_WIPED event naming the partitions), so this deletes the
events in raw SQL, against the schema instance/dagster_schema.py knows.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.instance.dagster_schema import dagster_engine, verify_known_schema
from analytics_pipeline.instance.event_rows import (
    DATE_PART,
    EVENTS,
    delete_events,
    key_part,
    reset_asset_keys,
)


def delete_expired_history(
    instance: dg.DagsterInstance,
    cutoffs: Mapping[dg.AssetKey, str],
    *,
    batch: int,
    max_batches: int,
) -> dict[str, int]:
    """Delete the events of partitions dated before each asset's cutoff (YYYY-MM-DD).

    In batches of `batch` events, each its own transaction, at most `max_batches` per asset: a
    long history is worked off over several runs without one huge transaction.
    """
    events = EVENTS
    engine = dagster_engine(instance)
    done: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            verify_known_schema(conn)
        for key, cutoff in cutoffs.items():
            expired = sa.and_(
                events.c.asset_key == key.to_string(),
                events.c.partition.is_not(None),
                key_part(events.c.partition, DATE_PART) < cutoff,
            )
            total = 0
            for _ in range(max_batches):
                with engine.begin() as conn:
                    victims = sa.select(events.c.id).where(expired).limit(batch)
                    ids = delete_events(conn, events.c.id.in_(victims))
                total += len(ids)
                if len(ids) < batch:
                    break
            done[key.to_user_string()] = total
        if any(done.values()):
            with engine.begin() as conn:
                reset_asset_keys(conn, None)  # only the records whose event is gone
            instance.wipe_asset_cached_status(list(cutoffs))
    finally:
        engine.dispose()
    return done
