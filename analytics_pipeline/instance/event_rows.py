"""Deleting Dagster event rows, with what points at them, by SQL (instance/dagster_schema.py).

Shared by the tenant erasure (instance/forget.py) and retention (instance/expired_history.py):
an event's tags go with it, and an asset's cached latest materialization that names a deleted
event (or run) is forgotten, so Dagster reads the latest one from the event log instead.
"""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from analytics_pipeline.partitions import DATE_DIMENSION, TENANT_DIMENSION, tenant_daily_partitions

_KEY_DIMENSIONS = [d.name for d in tenant_daily_partitions.partitions_defs]
TENANT_PART = _KEY_DIMENSIONS.index(TENANT_DIMENSION) + 1  # split_part is 1-based
DATE_PART = _KEY_DIMENSIONS.index(DATE_DIMENSION) + 1

# One table object for every statement: a WHERE built on another `sa.table("event_logs")` would
# be a second FROM in the DELETE.
EVENTS = sa.table("event_logs", sa.column("id"), sa.column("asset_key"), sa.column("partition"))


def key_part(column: sa.ColumnElement[str], part: int) -> sa.ColumnElement[str]:
    """One dimension (TENANT_PART, DATE_PART) of a partition key column, in SQL."""
    return sa.func.split_part(column, "|", part)


def delete_events(conn: sa.Connection, where: sa.ColumnElement[bool]) -> list[int]:
    """Delete the `EVENTS` rows matching `where`, and their asset event tags; their ids."""
    tags = sa.table("asset_event_tags", sa.column("event_id"))
    ids = list(conn.execute(sa.delete(EVENTS).where(where).returning(EVENTS.c.id)).scalars().all())
    if ids:
        conn.execute(sa.delete(tags).where(tags.c.event_id.in_(ids)))
    return ids


def reset_asset_keys(conn: sa.Connection, quoting: str | None) -> int:
    """Forget an asset's cached latest materialization when it matches `quoting` or is gone.

    `quoting` is a tenant's pattern (instance/forget.py `quote_pattern`), or None for only the
    records whose event or run is gone. Dagster then reads the latest one from the event log
    (its fallback for old records).
    """
    keys = sa.table(
        "asset_keys",
        sa.column("asset_key"),
        sa.column("last_materialization"),
        sa.column("last_run_id"),
    )
    events = sa.table("event_logs", sa.column("id"))
    runs = sa.table("runs", sa.column("run_id"))
    reset = 0
    for key, record, run_id in conn.execute(
        sa.select(keys.c.asset_key, keys.c.last_materialization, keys.c.last_run_id)
    ).all():
        storage_id = json.loads(record).get("storage_id") if record else None
        stale = record is not None and (
            (quoting is not None and re.search(quoting, record) is not None)
            or storage_id is None
            or conn.execute(sa.select(events.c.id).where(events.c.id == storage_id)).first() is None
        )
        run_gone = (
            run_id is not None
            and conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == run_id)).first()
            is None
        )
        if stale or run_gone:
            values = {"last_materialization": None} if stale else {}
            if run_gone:
                values["last_run_id"] = None
            conn.execute(sa.update(keys).where(keys.c.asset_key == key).values(values))
            reset += 1
    return reset
