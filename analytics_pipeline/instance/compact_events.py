"""Per-partition asset events stored as one template per batch and a few values per partition.

Why. A range run writes one materialization per (partition, asset). As an `event_logs` row with
its five index entries and three `asset_event_tags` rows it costs ~2.3 KB (measured, see
docs/SCALING.md): 5.9 GB for a full rebuild at 500 tenants x 730 days. The events of one batch
(one step, one asset) are the same JSON but for a few values (the partition, its tags, its own
figures, the timestamp), which instance/serialization.py already finds to serialize them fast.

How. The event storage keeps, per batch, the JSON around those values once (a *template*, in
`event_log_templates`) and, per partition, only the values (`event_log_compact`: id, template,
timestamp, partition and the values, ~200 bytes with its indexes). Every other event stays a
row of its own (`event_log_rows`, Dagster's `event_logs` table renamed). `event_logs` and
`asset_event_tags` become views that put the two together: a compact event reads back as the
exact row, byte for byte, that Dagster would have stored (its JSON is the template filled in;
its tags are the template's indexed tag keys with the partition's values). So every Dagster
read (partition status, staleness, a partition's history in the UI, the backfill daemon's
progress, a run's event log) and the project's own SQL (erasure, retention) work unchanged;
writes, updates and deletes through the views land on the tables underneath (INSTEAD OF
triggers). Ids come from Dagster's own `event_logs_id_seq`, so the two kinds interleave in id
order as they were stored. Two Dagster reads are split in two (`ids_query` and `records`;
`latest_events_by_asset`): through the view, PostgreSQL fills in the JSON of every matching
compact event before it sorts and limits, or before it joins to a list of ids, so "the latest 25
of an asset" would fill 365,000 of them, and the freshness daemon's latest state per asset all
of them; the ids come first.

Built on Dagster's schema (the columns of `event_logs` and `asset_event_tags`) and on
`_get_event_records` (pinned by its source's hash), with Dagster pinned in pyproject.toml:
`check_dagster_tables` refuses to convert tables of any other shape, and
analytics_pipeline_tests/test_compact_events.py fails on an upgrade that changes either (then
review this module: a Dagster migration that alters these tables has to run on the base tables).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import sqlalchemy as sa
from dagster._core.event_api import EventLogRecord, EventRecordsFilter
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import deserialize_value

from analytics_pipeline.errors import SchemaError

EVENTS_VIEW = "event_logs"
TAGS_VIEW = "asset_event_tags"
EVENT_ROWS = "event_log_rows"
TAG_ROWS = "asset_event_tag_rows"
TEMPLATES = "event_log_templates"
COMPACT = "event_log_compact"
ID_SEQUENCE = "event_logs_id_seq"

# JSON-encoded values never hold a raw control character (json.dumps escapes them): safe glue.
SEPARATOR = "\x1f"

# The columns Dagster 1.13 gives the two tables, in order; the views must have exactly these.
DAGSTER_COLUMNS: Mapping[str, tuple[str, ...]] = {
    EVENTS_VIEW: (
        "id",
        "run_id",
        "event",
        "dagster_event_type",
        "timestamp",
        "step_key",
        "asset_key",
        "partition",
    ),
    TAGS_VIEW: ("id", "event_id", "asset_key", "key", "value", "event_timestamp"),
}

# Serializes the conversion between processes that start at once (any constant of our own).
_LOCK = 7_391_002

TEMPLATES_TABLE = sa.table(
    TEMPLATES,
    sa.column("id", sa.BigInteger),
    sa.column("run_id", sa.String),
    sa.column("dagster_event_type", sa.Text),
    sa.column("step_key", sa.Text),
    sa.column("asset_key", sa.Text),
    sa.column("pieces", sa.Text),
    sa.column("tag_keys", sa.Text),
)
COMPACT_TABLE = sa.table(
    COMPACT,
    sa.column("id", sa.BigInteger),
    sa.column("template_id", sa.BigInteger),
    sa.column("timestamp", sa.DateTime),
    sa.column("partition", sa.Text),
    sa.column("vals", sa.Text),
)

# The conversion (tables, views, triggers), with the names above spelled out.
_CONVERT = (Path(__file__).with_suffix(".sql")).read_text()


def _columns(conn: sa.Connection, table: str) -> tuple[str, ...]:
    return tuple(
        conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = :t "
                "ORDER BY ordinal_position"
            ),
            {"t": table},
        ).scalars()
    )


def _kind(conn: sa.Connection, name: str) -> str | None:
    """'r' (table), 'v' (view), or None: what `name` is in the current schema."""
    kind = conn.execute(
        sa.text(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relname = :n"
        ),
        {"n": name},
    ).scalar()
    return None if kind is None else str(kind)


def is_installed(conn: sa.Connection) -> bool:
    """Whether `event_logs` is already the view over rows and compact events."""
    return _kind(conn, EVENTS_VIEW) == "v"


def check_dagster_tables(conn: sa.Connection) -> None:
    """Refuse to convert tables of another shape than the one this module was written for."""
    for table, expected in DAGSTER_COLUMNS.items():
        found = _columns(conn, table)
        if found != expected:
            raise SchemaError(
                f"Dagster's table {table!r} has the columns {list(found)}, not the "
                f"{list(expected)} analytics_pipeline/instance/compact_events.py was written "
                "for: a Dagster upgrade changed its schema. Pin the Dagster version in "
                "pyproject.toml back, or review that module before starting the instance"
            )


def install(engine: sa.Engine) -> bool:
    """Convert the instance's `event_logs` and `asset_event_tags` into the views; True if done now.

    Idempotent and safe when several processes start at once (one converts under an advisory
    lock, the others find it done). Existing rows stay where they are (`event_log_rows`).
    """
    with engine.connect() as conn:
        if is_installed(conn):
            return False
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
        if is_installed(conn):
            return False
        check_dagster_tables(conn)
        # The DBAPI cursor, without parameters: the functions' bodies hold '%' and '$'.
        cursor = conn.connection.cursor()
        cursor.execute(_CONVERT)
        cursor.close()
    return True


def template_row(
    first: EventLogEntry, pieces: Sequence[str], tag_positions: Mapping[str, int]
) -> dict[str, Any]:
    """The `event_log_templates` row of a batch whose first event is `first`."""
    dagster_event = first.get_dagster_event()
    if dagster_event.asset_key is None:
        raise ValueError(f"a compact event needs an asset key; {dagster_event.event_type_value}")
    return {
        "run_id": first.run_id,
        "dagster_event_type": dagster_event.event_type_value,
        "step_key": dagster_event.step_key,
        "asset_key": dagster_event.asset_key.to_string(),
        "pieces": json.dumps(list(pieces)),
        "tag_keys": json.dumps(dict(tag_positions)),
    }


def insert_template(conn: sa.Connection, row: Mapping[str, Any]) -> int:
    """Store a template; its id."""
    return int(
        conn.execute(
            sa.insert(TEMPLATES_TABLE).values(row).returning(TEMPLATES_TABLE.c.id)
        ).scalar_one()
    )


def next_ids(conn: sa.Connection, n: int) -> list[int]:
    """n new event ids, ascending, from Dagster's own sequence."""
    ids = conn.execute(
        sa.select(sa.func.nextval(ID_SEQUENCE)).select_from(sa.func.generate_series(1, n))
    ).scalars()
    return sorted(int(i) for i in ids)


def insert_compact(conn: sa.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Store compact events: dicts of id, template_id, timestamp, partition and vals."""
    if rows:
        conn.execute(sa.insert(COMPACT_TABLE), list(rows))


def join_values(values: Sequence[str]) -> str:
    """The `vals` column of a compact event: its JSON-encoded values in template order."""
    return SEPARATOR.join(values)


# sha256 of `SqlEventLogStorage._get_event_records`, Dagster 1.13.27: `ids_query` and
# `records` are its two halves (the storage runs them as two queries); a different hash means
# an upgrade changed it (test_compact_events.py).
STOCK_EVENT_RECORDS_SHA256 = "67cc88c80b186a2ee94a79a45e741cb4068a8972dc21c91695fe20d879339a43"


def stock_event_records_sha256() -> str:
    """The sha256 of the installed Dagster's `_get_event_records`, for the pin's guard test."""
    return hashlib.sha256(
        inspect.getsource(SqlEventLogStorage._get_event_records).encode()
    ).hexdigest()


# sha256 of `SqlEventLogStorage.get_freshness_state_records`, Dagster 1.13.27: the storage
# reads the same latest event per asset in two steps (`latest_events_by_asset`).
STOCK_FRESHNESS_SHA256 = "91824242e0853f1990fca65a08ad2ec5b80f2ed544c53c17638d325405e0cf60"


def stock_freshness_sha256() -> str:
    """The sha256 of the installed Dagster's `get_freshness_state_records`."""
    source = inspect.getsource(SqlEventLogStorage.get_freshness_state_records)
    return hashlib.sha256(source.encode()).hexdigest()


def latest_events_by_asset(
    storage: SqlEventLogStorage, keys: Sequence[dg.AssetKey], event_type: DagsterEventType
) -> list[str]:
    """The JSON of each asset's latest event of `event_type`: the ids first (no JSON filled
    in), then those events."""
    table = SqlEventLogStorageTable
    latest = (
        sa.select(sa.func.max(table.c.id))
        .where(
            table.c.asset_key.in_([key.to_string() for key in keys]),
            table.c.dagster_event_type == event_type.value,
        )
        .group_by(table.c.asset_key)
    )
    with storage.index_connection() as conn:
        ids = sorted(int(i) for i in conn.execute(latest).scalars())
        texts = events_by_id(conn, ids)
    return [texts[i] for i in ids if i in texts]


def ids_query(
    storage: SqlEventLogStorage,
    event_records_filter: EventRecordsFilter,
    limit: int,
    ascending: bool,
) -> sa.Select[Any]:
    """Dagster's `_get_event_records` query, selecting the ids only."""
    details = (
        next(iter(storage._get_assets_details([event_records_filter.asset_key])))
        if event_records_filter.asset_key
        else None
    )
    query = sa.select(SqlEventLogStorageTable.c.id).select_from(SqlEventLogStorageTable)
    # Dagster leaves this helper's return unannotated: it is the query, filtered.
    filtered: sa.Select[Any] = storage._apply_filter_to_query(
        query=query, event_records_filter=event_records_filter, asset_details=details
    )
    order = SqlEventLogStorageTable.c.id
    return filtered.limit(limit).order_by(order.asc() if ascending else order.desc())


def events_by_id(conn: sa.Connection, ids: Sequence[int]) -> dict[int, str]:
    """The stored JSON of the events with these ids."""
    if not ids:
        return {}
    table = SqlEventLogStorageTable
    rows = conn.execute(sa.select(table.c.id, table.c.event).where(table.c.id.in_(ids)))
    return {int(i): str(text) for i, text in rows}


def records(ids: Sequence[int], texts: Mapping[int, str]) -> list[EventLogRecord]:
    """`EventLogRecord`s in the order of `ids`, as Dagster's `_get_event_records` makes them
    (what does not parse as an event is skipped with a warning, as there)."""
    out = []
    for row_id in ids:
        text = texts.get(row_id)
        if text is None:  # deleted between the two queries
            continue
        try:
            entry = deserialize_value(text, NamedTuple)
        except json.JSONDecodeError:
            logging.warning("Could not parse event record id `%s`.", row_id)
            continue
        if not isinstance(entry, EventLogEntry):
            logging.warning("Could not resolve event record as EventLogEntry for id `%s`.", row_id)
            continue
        out.append(EventLogRecord(storage_id=row_id, event_log_entry=entry))
    return out
