"""dagster-postgres event-log storage that keeps its connections and writes events in bulk.

Built on dagster-postgres internals (pinned with Dagster in pyproject.toml; the guard is
analytics_pipeline_tests/test_instance_storage.py, which compares what this storage stores with
what the stock one stores, row for row, and fails when an upgrade changes either).

Two costs dominate Dagster's bookkeeping of a range run over many partitions:

- Connections. The stock `PostgresEventLogStorage` opens a new connection (NullPool) for every
  event it stores: a login (TCP, authentication, backend start) per event. This storage keeps a
  small pool: at most 1 + 4 connections per process, validated before use, recycled every
  5 minutes so that idle processes do not hold connections for long.
- One round trip per event. When a run is created Dagster plans one materialization per
  (partition, asset) and hands them over as one batch, but dagster-postgres writes only
  materializations and observations in bulk: planned events fall back to `store_event`, one
  INSERT, one asset-key upsert and two commits each (~10 ms; 15,000 partitions = 150 s). Here a
  run of planned events becomes one multi-row INSERT, one tags insert and one asset-key upsert
  per asset, exactly the rows the stock path writes. Planned events for a run over many
  partitions are, besides, one per asset with the partitions as a subset
  (instance/planned_events.py), so this path is mostly taken by materializations.

Dagster only hands events over in batches when DAGSTER_EVENT_BATCH_SIZE is set, and reads it on
every event; the `event_batch_size` setting below sets it (unless the environment already does)
for every process that loads this instance: CLI, webserver, daemon, code server and run workers.

All three storages (runs, events, schedules) find their database through
`analytics_pipeline.instance.database`: DAGSTER_PG_URL, else the embedded server, so Dagster's
own commands work in the project folder with nothing set.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.definitions.freshness import FreshnessStateRecord
from dagster._core.event_api import EventLogRecord, EventRecordsFilter
from dagster._core.events import DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetEventTagsTable, SqlEventLogStorageTable
from dagster._serdes import deserialize_value
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine

from analytics_pipeline.instance import backfill_logs, backfill_runs, compact_events
from analytics_pipeline.instance.concurrency import SafePoolInitialization
from analytics_pipeline.instance.database import instance_database_url
from analytics_pipeline.instance.planned_events import incomplete_attempts
from analytics_pipeline.instance.serialization import BatchSerializer

# Every process that loads the project's instance (daemon, webserver, CLI) turns multi-partition
# backfills into a few rectangular runs instead of one run per tenant (instance/backfill_runs.py)
# and logs a large backfill's subsets as counts, not megabytes of keys (instance/backfill_logs.py).
backfill_runs.install()
backfill_logs.install()

# The tables under the views of the compact layout (instance/compact_events.py), with Dagster's
# columns: rows written here directly skip the views' triggers.
_EVENT_ROWS = SqlEventLogStorageTable.to_metadata(sa.MetaData(), name=compact_events.EVENT_ROWS)
_TAG_ROWS = AssetEventTagsTable.to_metadata(sa.MetaData(), name=compact_events.TAG_ROWS)

EVENT_BATCH_SIZE_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DEFAULT_EVENT_BATCH_SIZE = 1000


def _config_type() -> dict[str, dg.Field]:
    return {
        # Optional: without it, DAGSTER_PG_URL, else the embedded server.
        "postgres_url": dg.Field(dg.StringSource, is_required=False),
        "should_autocreate_tables": dg.Field(bool, is_required=False, default_value=True),
    }


def _kwargs(inst_data: Any, config_value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "inst_data": inst_data,
        "postgres_url": instance_database_url(config_value.get("postgres_url")),
        "should_autocreate_tables": config_value.get("should_autocreate_tables", True),
    }


class _ProjectDatabase:
    """Configuration shared by the three storages: the URL from `instance_database_url`."""

    @classmethod
    def config_type(cls) -> Any:
        return _config_type()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> Any:
        return cls(**_kwargs(inst_data, config_value))


class ProjectRunStorage(_ProjectDatabase, PostgresRunStorage):
    """dagster-postgres's run storage on the project's instance database."""


class ProjectScheduleStorage(_ProjectDatabase, PostgresScheduleStorage):
    """dagster-postgres's schedule storage on the project's instance database."""


# Events that touch only event_logs, asset_event_tags and asset_keys when stored: these are
# written in bulk here; anything else (check plans and results, run events) takes the stock path.
_BULK = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
    }
)


def _bulk_type(event: EventLogEntry) -> DagsterEventType | None:
    kind = event.dagster_event_type
    return kind if kind in _BULK and event.get_dagster_event().asset_key else None


class PooledPostgresEventLogStorage(
    SafePoolInitialization, _ProjectDatabase, PostgresEventLogStorage
):
    """PostgresEventLogStorage with a connection pool, bulk writes of asset events and a pool's
    first claim safe under concurrent runs (instance/concurrency.py)."""

    def __init__(
        self, *args: Any, event_batch_size: int = DEFAULT_EVENT_BATCH_SIZE, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        stock = self._engine
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=4,
            pool_pre_ping=True,
            pool_recycle=300,
        )
        stock.dispose()
        # The compact layout, unless the tables are someone else's to create (and convert).
        if self.should_autocreate_tables:
            compact_events.install(self._engine)
        with self._engine.connect() as conn:
            self._compact = compact_events.is_installed(conn)
        if event_batch_size > 0:
            os.environ.setdefault(EVENT_BATCH_SIZE_ENV, str(event_batch_size))

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        # Keep the batch's order: each run of consecutive events of one bulk type is written at
        # once; anything else goes through the stock path one event at a time.
        for kind, group in itertools.groupby(events, key=_bulk_type):
            chunk = list(group)
            if kind is not None and len(chunk) > 1:
                self._store_asset_events(chunk)
            else:
                super().store_event_batch(chunk)

    def _store_asset_events(self, events: Sequence[EventLogEntry]) -> None:
        """What the stock `store_event` writes for each event, in a few statements for all.

        The batch's JSON comes from one template (instance/serialization.py). On the compact
        layout (instance/compact_events.py) the events that fit the template are stored as the
        template once and their values; the others as rows of their own, with their tags. Ids
        come from Dagster's sequence, in the batch's order. Then each asset's row in
        asset_keys, from its last event (every event of an asset overwrites the same columns:
        last run id, timestamp, last materialization).
        """
        serializer = BatchSerializer(events[0])
        keys: dict[dg.AssetKey, str] = {}  # AssetKey.to_string() is a json.dumps: once per key
        # dagster-postgres leaves this helper unannotated (it returns a naive UTC datetime).
        stamps = [self._event_insert_timestamp(event) for event in events]  # type: ignore[no-untyped-call]
        values = [serializer.values(event) if self._compact else None for event in events]
        if sum(v is not None for v in values) < 2:  # a template would cost more than it saves
            values = [None] * len(events)
        rows = [
            self._row(event, serializer.serialize(event) if v is None else "", stamp, keys)
            for event, v, stamp in zip(events, values, stamps, strict=True)
        ]
        # One transaction: no template without its events, no event without its tags.
        with self.index_transaction() as conn:
            if self._compact:
                event_ids = compact_events.next_ids(conn, len(events))
                self._insert_compact(conn, events[0], serializer, rows, values, event_ids)
            else:
                insert = SqlEventLogStorageTable.insert().returning(
                    SqlEventLogStorageTable.c.id, sort_by_parameter_order=True
                )
                event_ids = [int(row[0]) for row in conn.execute(insert, rows).all()]
            own = [i for i, v in enumerate(values) if v is None]
            tag_rows = self._tag_rows(
                [events[i] for i in own],
                [event_ids[i] for i in own],
                [stamps[i] for i in own],
                keys,
            )
            if tag_rows and self._compact:
                conn.execute(_TAG_ROWS.insert(), tag_rows)
            elif tag_rows and self.has_table(AssetEventTagsTable.name):
                conn.execute(AssetEventTagsTable.insert(), tag_rows)
            last_by_asset = {row["asset_key"]: i for i, row in enumerate(rows)}
            for i in last_by_asset.values():
                self._store_asset_event(conn, events[i], event_ids[i])

    def _insert_compact(
        self,
        conn: sa.Connection,
        first: EventLogEntry,
        serializer: BatchSerializer,
        rows: Sequence[dict[str, Any]],
        values: Sequence[list[str] | None],
        event_ids: Sequence[int],
    ) -> None:
        """The batch's rows on the compact layout: a template and the values of the events that
        fit it, rows of their own for the others."""
        own = [
            {"id": event_id, **row}
            for event_id, row, v in zip(event_ids, rows, values, strict=True)
            if v is None
        ]
        if own:
            conn.execute(_EVENT_ROWS.insert(), own)
        if len(own) == len(rows):
            return
        indexed = self.get_asset_tags_to_index(set(serializer.tag_positions))
        positions = {k: p for k, p in serializer.tag_positions.items() if k in indexed}
        template_id = compact_events.insert_template(
            conn, compact_events.template_row(first, serializer.pieces, positions)
        )
        compact_events.insert_compact(
            conn,
            [
                {
                    "id": event_id,
                    "template_id": template_id,
                    "timestamp": row["timestamp"],
                    "partition": row["partition"],
                    "vals": compact_events.join_values(v),
                }
                for event_id, row, v in zip(event_ids, rows, values, strict=True)
                if v is not None
            ],
        )

    @staticmethod
    def _key(asset_key: dg.AssetKey | None, keys: dict[dg.AssetKey, str]) -> str | None:
        if asset_key is None:
            return None
        if asset_key not in keys:
            keys[asset_key] = asset_key.to_string()
        return keys[asset_key]

    def _row(
        self, event: EventLogEntry, serialized: str, stamp: Any, keys: dict[dg.AssetKey, str]
    ) -> dict[str, Any]:
        """`SqlEventLogStorage._event_to_row(event)`, given the event's serialization."""
        dagster_event = event.get_dagster_event()
        return {
            "run_id": event.run_id,
            "event": serialized,
            "dagster_event_type": dagster_event.event_type_value,
            "timestamp": stamp,
            "step_key": dagster_event.step_key,
            "asset_key": self._key(dagster_event.asset_key, keys),
            "partition": dagster_event.partition or None,
        }

    def _tag_rows(
        self,
        events: Sequence[EventLogEntry],
        event_ids: Sequence[int],
        stamps: Sequence[Any],
        keys: dict[dg.AssetKey, str],
    ) -> list[dict[str, Any]]:
        """The rows `SqlEventLogStorage._store_asset_event_tags` inserts for these events."""
        indexed: dict[frozenset[str], set[str]] = {}  # which tag keys Dagster indexes, per set
        rows: list[dict[str, Any]] = []
        for event, event_id, stamp in zip(events, event_ids, stamps, strict=True):
            dagster_event = event.get_dagster_event()
            if dagster_event.is_step_materialization:
                tags = dagster_event.step_materialization_data.materialization.tags or {}
            elif dagster_event.is_asset_observation:
                tags = dagster_event.asset_observation_data.asset_observation.tags or {}
            else:
                continue
            names = frozenset(tags)
            if names not in indexed:
                indexed[names] = self.get_asset_tags_to_index(set(names))
            asset_key = self._key(dagster_event.asset_key, keys)
            rows.extend(
                {
                    "event_id": event_id,
                    "asset_key": asset_key,
                    "key": key,
                    "value": value,
                    "event_timestamp": stamp,
                }
                for key, value in tags.items()
                if key in indexed[names]
            )
        return rows

    def _init_db(self) -> None:
        # dagster-postgres creates its tables when `event_logs` is not among the database's
        # tables; on the compact layout it is a view, and everything exists already.
        with self._engine.connect() as conn:
            if compact_events.is_installed(conn):
                return
        super()._init_db()

    def _get_event_records(
        self,
        event_records_filter: EventRecordsFilter,
        limit: int | None = None,
        ascending: bool = False,
    ) -> Sequence[EventLogRecord]:
        # Dagster's query selects ids and events, ordered by id, limited. Through the view,
        # PostgreSQL fills in the JSON of every compact event that matches before it sorts
        # (7 s for the 25 latest materializations of an asset with 365,000 partitions): so the
        # ids first (no JSON filled), then the events of those ids. compact_events.py pins it.
        if not self._compact or not limit:
            return super()._get_event_records(event_records_filter, limit, ascending)
        query = compact_events.ids_query(self, event_records_filter, limit, ascending)
        with self.index_connection() as conn:
            ids = [int(i) for i in conn.execute(query).scalars()]
            texts = compact_events.events_by_id(conn, ids)
        return compact_events.records(ids, texts)

    def get_freshness_state_records(
        self, keys: Sequence[dg.AssetKey]
    ) -> Mapping[dg.AssetKey, FreshnessStateRecord]:
        # Dagster joins `event_logs` to its latest ids per asset: through the view PostgreSQL
        # cannot look the ids up in the compact events and fills in all of them (29 s a call at
        # 2.5 M, every tick of the freshness daemon). The ids first, then those events.
        if not self._compact:
            return super().get_freshness_state_records(keys)
        texts = compact_events.latest_events_by_asset(
            self, keys, DagsterEventType.FRESHNESS_STATE_CHANGE
        )
        entries = [deserialize_value(text, EventLogEntry) for text in texts]
        records = [FreshnessStateRecord.from_event_log_entry(entry) for entry in entries]
        return {record.entity_key: record for record in records}

    @property
    def supports_partition_subset_in_asset_materialization_planned_events(self) -> bool:
        # One planned event per asset and run instead of one per partition; the partitions'
        # in-progress and failed status still answers right (instance/planned_events.py).
        return True

    def get_latest_asset_partition_materialization_attempts_without_materializations(
        self, asset_key: dg.AssetKey, after_storage_id: int | None = None
    ) -> Mapping[str, tuple[str, int]]:
        stock = (
            super().get_latest_asset_partition_materialization_attempts_without_materializations(
                asset_key, after_storage_id
            )
        )
        return incomplete_attempts(self, asset_key, after_storage_id, stock)

    def dispose(self) -> None:
        # The stock storage holds no connections, so its dispose() leaves the engine alone;
        # ours must close the pool, or every instance a long-lived process (code server,
        # daemon) creates and disposes would keep its idle connections open.
        super().dispose()
        self._engine.dispose()

    @classmethod
    def config_type(cls) -> Any:
        return {
            **_config_type(),
            "event_batch_size": dg.Field(
                int,
                is_required=False,
                default_value=DEFAULT_EVENT_BATCH_SIZE,
                description="Events Dagster hands to the storage at once (sets "
                "DAGSTER_EVENT_BATCH_SIZE unless the environment does); 0 leaves it unset.",
            ),
        }

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            **_kwargs(inst_data, config_value),
            event_batch_size=config_value.get("event_batch_size", DEFAULT_EVENT_BATCH_SIZE),
        )
