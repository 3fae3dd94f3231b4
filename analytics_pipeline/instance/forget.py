"""Removing a tenant, or expired partitions, from the Dagster instance's PostgreSQL storage.

Dagster's public API covers part of it: `delete_run` (a run and its events),
`delete_dynamic_partition`, `wipe_asset_cached_status`, `add_run_tags`,
`update_event_log_record`. It has no way to drop single partitions' history
(`wipe_asset_partitions` is not implemented for SQL storage, and would log an ASSET_WIPED event
that names the partitions), nor to remove a tenant quoted inside other runs' events (a range
run's metadata, copied onto every partition it covers, lists its tenants and previews one
partition's rows). What the API cannot do is done here, in raw SQL, and nowhere else.

Raw SQL depends on Dagster's schema, so `KNOWN_TEXT_COLUMNS` lists every table of it and every
column that can hold text. `verify_known_schema` refuses to run on any other schema, and a test
(test_tenant_erasure.py) fails when a Dagster upgrade changes it: then review this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import dagster as dg
import sqlalchemy as sa
from dagster._core.events.log import EventLogEntry
from dagster._serdes import deserialize_value

from analytics_pipeline.errors import TenantLifecycleError
from analytics_pipeline.partitions import (
    DATE_DIMENSION,
    OFFBOARDED_PARTITIONS_NAME,
    TENANT_DIMENSION,
    TENANTS_PARTITIONS_NAME,
    tenant_daily_partitions,
)
from analytics_pipeline.run_tags import run_tenant

# Every table of Dagster 1.13's PostgreSQL schema, with its text columns (text, varchar).
KNOWN_TEXT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "alembic_version": ("version_num",),
    "asset_check_executions": (
        "asset_key",
        "check_name",
        "evaluation_event",
        "execution_status",
        "partition",
        "run_id",
    ),
    "asset_daemon_asset_evaluations": ("asset_evaluation_body", "asset_key"),
    "asset_event_tags": ("asset_key", "key", "value"),
    "asset_keys": (
        "asset_details",
        "asset_key",
        "cached_status_data",
        "last_materialization",
        "last_run_id",
        "tags",
    ),
    "backfill_tags": ("backfill_id", "key", "value"),
    "bulk_actions": ("action_type", "body", "job_name", "key", "selector_id", "status"),
    "concurrency_limits": ("concurrency_key",),
    "concurrency_slots": ("concurrency_key", "run_id", "step_key"),
    "daemon_heartbeats": ("body", "daemon_id", "daemon_type"),
    "dynamic_partitions": ("partition", "partitions_def_name"),
    "event_logs": ("asset_key", "dagster_event_type", "event", "partition", "run_id", "step_key"),
    "instance_info": ("run_storage_id",),
    "instigators": (
        "instigator_body",
        "instigator_type",
        "repository_selector_id",
        "selector_id",
        "status",
    ),
    "job_ticks": ("job_origin_id", "selector_id", "status", "tick_body", "type"),
    "jobs": (
        "job_body",
        "job_origin_id",
        "job_type",
        "repository_origin_id",
        "selector_id",
        "status",
    ),
    "kvs": ("key", "value"),
    "pending_steps": ("concurrency_key", "run_id", "step_key"),
    "run_tags": ("key", "run_id", "value"),
    "runs": (
        "backfill_id",
        "mode",
        "partition",
        "partition_set",
        "pipeline_name",
        "run_body",
        "run_id",
        "snapshot_id",
        "status",
    ),
    "secondary_indexes": ("name",),
    "snapshots": ("snapshot_id", "snapshot_type"),
}

REMOVED_ROWS = "[rows of an erased tenant removed]"
_KEY_DIMENSIONS = [d.name for d in tenant_daily_partitions.partitions_defs]
_TENANT_PART = _KEY_DIMENSIONS.index(TENANT_DIMENSION) + 1  # split_part is 1-based
_DATE_PART = _KEY_DIMENSIONS.index(DATE_DIMENSION) + 1
_TABLE_CLASSES = {"TableMetadataEntryData": "TextMetadataEntryData", "TableMetadataValue": None}


class _Tid(sa.types.UserDefinedType):
    """PostgreSQL's row address type, to update a row found by a scan without a primary key."""

    cache_ok = True

    def get_col_spec(self, **_: object) -> str:
        return "tid"


def quote_pattern(tenant_id: str) -> str:
    """A regular expression (PostgreSQL and Python alike) for the id as a whole word.

    Tenant ids are letters, digits, '_' and '-': "acme" must not match inside "acme-2".
    """
    return rf"(^|[^A-Za-z0-9_-]){re.escape(tenant_id)}([^A-Za-z0-9_-]|$)"


def scrub_text(text: str, tenant_id: str, pseudonym: str) -> str:
    """The text with the tenant gone: tables (previews) quoting it dropped, the id replaced."""
    pattern = re.compile(quote_pattern(tenant_id))
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, (dict, list)):
        text = json.dumps(_drop_tables(data, pattern))
    return pattern.sub(lambda m: f"{m.group(1)}{pseudonym}{m.group(2)}", text)


def _drop_tables(node: object, pattern: re.Pattern[str]) -> object:
    if isinstance(node, list):
        return [_drop_tables(item, pattern) for item in node]
    if not isinstance(node, dict):
        return node
    cls = node.get("__class__")
    if cls in _TABLE_CLASSES and pattern.search(json.dumps(node)):
        replacement = _TABLE_CLASSES[cls] or "TextMetadataValue"
        return {"__class__": replacement, "text": REMOVED_ROWS}
    return {k: _drop_tables(v, pattern) for k, v in node.items()}


def _engine(instance: dg.DagsterInstance) -> sa.Engine:
    urls = {
        getattr(s, "postgres_url", None)
        for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    }
    if len(urls) != 1 or None in urls:
        raise TenantLifecycleError(
            "erasing from Dagster needs its runs, events and schedules in one PostgreSQL "
            "database (dagster.yaml as shipped); this instance has "
            f"{type(instance.event_log_storage).__name__}: erase by hand or fix the instance"
        )
    return sa.create_engine(urls.pop())


def live_text_columns(conn: sa.Connection) -> dict[str, tuple[str, ...]]:
    """Every table of the Dagster database's schema and its text columns, sorted."""
    rows = conn.execute(
        sa.text(
            "SELECT t.table_name, c.column_name, c.data_type FROM information_schema.tables t"
            " LEFT JOIN information_schema.columns c ON c.table_schema = t.table_schema"
            " AND c.table_name = t.table_name"
            " WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'"
        )
    ).all()
    out: dict[str, list[str]] = {}
    for table, column, data_type in rows:
        cols = out.setdefault(table, [])
        if data_type in ("text", "character varying", "character", "json", "jsonb"):
            cols.append(column)
    return {t: tuple(sorted(c)) for t, c in sorted(out.items())}


def verify_known_schema(conn: sa.Connection) -> None:
    """Refuse to touch a Dagster schema this module was not written against."""
    live = live_text_columns(conn)
    known = {t: tuple(sorted(c)) for t, c in KNOWN_TEXT_COLUMNS.items()}
    if live != known:
        added = sorted(set(live.items()) - set(known.items()))
        gone = sorted(set(known.items()) - set(live.items()))
        raise TenantLifecycleError(
            f"the Dagster database's schema is not the one analytics_pipeline/instance/forget.py "
            f"knows (new or changed: {added}; missing: {gone}). A Dagster upgrade changed it: "
            "review that module (which tables can quote a tenant) before erasing anything"
        )


def count_quotes(instance: dg.DagsterInstance, tenant_id: str) -> dict[str, int]:
    """Rows of each Dagster table whose text quotes the tenant id (non-zero tables only)."""
    engine = _engine(instance)
    try:
        with engine.connect() as conn:
            verify_known_schema(conn)
            return _count_quotes(conn, tenant_id)
    finally:
        engine.dispose()


def _count_quotes(conn: sa.Connection, tenant_id: str) -> dict[str, int]:
    pattern = quote_pattern(tenant_id)
    counts = {}
    for name, columns in KNOWN_TEXT_COLUMNS.items():
        t = sa.table(name, *(sa.column(c) for c in columns))
        n = conn.execute(
            sa.select(sa.func.count()).where(
                sa.or_(*(t.c[c].regexp_match(pattern) for c in columns))
            )
        ).scalar_one()
        if n:
            counts[name] = n
    return counts


def forget_tenant(instance: dg.DagsterInstance, tenant_id: str, pseudonym: str) -> dict[str, int]:
    """Remove every trace of the tenant from the instance; return what was done, per kind.

    Runs of that tenant alone are deleted with their events; its partitions' events are deleted
    from other runs; what still quotes it (a range run's tags and metadata, ticks, cursors) has
    its previews of the tenant's rows removed and its id replaced by `pseudonym`. Finally no
    text column of any table may quote it, or this raises.
    """
    engine = _engine(instance)
    done: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            verify_known_schema(conn)
            deleted_runs = _delete_tenant_runs(instance, conn, tenant_id)
            done["runs_deleted"] = len(deleted_runs)
        with engine.begin() as conn:
            done.update(_delete_partition_events(conn, tenant_id))
            done["asset_keys_reset"] = _reset_asset_keys(conn, tenant_id)
        done["events_scrubbed"] = _scrub_events(instance, engine, tenant_id, pseudonym)
        done["run_tags_scrubbed"] = _scrub_run_tags(instance, engine, tenant_id, pseudonym)
        done["partitions_removed"] = 0
        for name in (TENANTS_PARTITIONS_NAME, OFFBOARDED_PARTITIONS_NAME):
            if instance.has_dynamic_partition(name, tenant_id):
                instance.delete_dynamic_partition(name, tenant_id)
                done["partitions_removed"] += 1
        with engine.begin() as conn:
            done["other_rows_scrubbed"] = _scrub_everything(conn, tenant_id, pseudonym)
            left = _count_quotes(conn, tenant_id)
        instance.wipe_asset_cached_status(instance.get_asset_keys())
    finally:
        engine.dispose()
    if left:
        raise TenantLifecycleError(
            f"tenant {tenant_id!r} is still quoted in the Dagster database ({left}); run the "
            "erasure again, and report it if it persists"
        )
    return done


def _delete_tenant_runs(
    instance: dg.DagsterInstance, conn: sa.Connection, tenant_id: str
) -> list[str]:
    tags = sa.table("run_tags", sa.column("run_id"), sa.column("value"))
    candidates = conn.execute(
        sa.select(tags.c.run_id)
        .distinct()
        .where(tags.c.value.regexp_match(quote_pattern(tenant_id)))
    ).scalars()
    deleted = []
    for run_id in candidates:
        run = instance.get_run_by_id(run_id)
        if run is not None and run_tenant(run.tags) == tenant_id:
            instance.delete_run(run_id)  # the run and all of its events
            deleted.append(run_id)
    if deleted:
        checks = sa.table("asset_check_executions", sa.column("run_id"))
        conn.execute(sa.delete(checks).where(checks.c.run_id.in_(deleted)))
        conn.commit()
    return deleted


def _tenant_part(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    return sa.func.split_part(column, "|", _TENANT_PART)


def _delete_partition_events(conn: sa.Connection, tenant_id: str) -> dict[str, int]:
    events = sa.table("event_logs", sa.column("id"), sa.column("partition"))
    tags = sa.table("asset_event_tags", sa.column("event_id"))
    checks = sa.table("asset_check_executions", sa.column("partition"))
    ids = (
        conn.execute(
            sa.delete(events)
            .where(_tenant_part(events.c.partition) == tenant_id)
            .returning(events.c.id)
        )
        .scalars()
        .all()
    )
    if ids:
        conn.execute(sa.delete(tags).where(tags.c.event_id.in_(ids)))
    gone_checks = conn.execute(
        sa.delete(checks).where(_tenant_part(checks.c.partition) == tenant_id)
    ).rowcount
    return {"partition_events_deleted": len(ids), "check_executions_deleted": gone_checks}


def _reset_asset_keys(conn: sa.Connection, tenant_id: str | None) -> int:
    """Forget an asset's cached latest materialization when it quotes the tenant or is gone.

    Dagster then reads the latest one from the event log (its fallback for old records).
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
            (tenant_id is not None and re.search(quote_pattern(tenant_id), record) is not None)
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


def _scrub_events(
    instance: dg.DagsterInstance, engine: sa.Engine, tenant_id: str, pseudonym: str
) -> int:
    events = sa.table("event_logs", sa.column("id"), sa.column("event"))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(events.c.id, events.c.event).where(
                events.c.event.regexp_match(quote_pattern(tenant_id))
            )
        ).all()
    storage = instance.event_log_storage
    for event_id, text in rows:
        entry = deserialize_value(scrub_text(text, tenant_id, pseudonym), EventLogEntry)
        storage.update_event_log_record(event_id, entry)  # type: ignore[attr-defined]
    return len(rows)


def _scrub_run_tags(
    instance: dg.DagsterInstance, engine: sa.Engine, tenant_id: str, pseudonym: str
) -> int:
    tags = sa.table("run_tags", sa.column("run_id"), sa.column("key"), sa.column("value"))
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(tags.c.run_id, tags.c.key, tags.c.value).where(
                tags.c.value.regexp_match(quote_pattern(tenant_id))
            )
        ).all()
    by_run: dict[str, dict[str, str]] = {}
    for run_id, key, value in rows:
        by_run.setdefault(run_id, {})[key] = scrub_text(value, tenant_id, pseudonym)
    for run_id, new_tags in by_run.items():
        instance.add_run_tags(run_id, new_tags)  # rewrites run_tags and the run's own record
    return len(rows)


def _scrub_everything(conn: sa.Connection, tenant_id: str, pseudonym: str) -> int:
    """The catch-all: any other text that quotes the tenant (ticks, cursors, backfills)."""
    pattern = quote_pattern(tenant_id)
    scrubbed = 0
    for name, columns in KNOWN_TEXT_COLUMNS.items():
        t = sa.table(name, sa.column("ctid"), *(sa.column(c) for c in columns))
        for column in columns:
            rows = conn.execute(
                sa.select(sa.cast(t.c.ctid, sa.Text), t.c[column]).where(
                    t.c[column].regexp_match(pattern)
                )
            ).all()
            for ctid, text in rows:
                conn.execute(
                    sa.update(t)
                    .where(t.c.ctid == sa.cast(sa.literal(ctid), _Tid()))
                    .values({column: scrub_text(text, tenant_id, pseudonym)})
                )
            scrubbed += len(rows)
    return scrubbed


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
    events = sa.table("event_logs", sa.column("id"), sa.column("asset_key"), sa.column("partition"))
    tags = sa.table("asset_event_tags", sa.column("event_id"))
    engine = _engine(instance)
    done: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            verify_known_schema(conn)
        for key, cutoff in cutoffs.items():
            expired = sa.and_(
                events.c.asset_key == key.to_string(),
                events.c.partition.is_not(None),
                sa.func.split_part(events.c.partition, "|", _DATE_PART) < cutoff,
            )
            total = 0
            for _ in range(max_batches):
                with engine.begin() as conn:
                    victims = sa.select(events.c.id).where(expired).limit(batch)
                    ids = (
                        conn.execute(
                            sa.delete(events).where(events.c.id.in_(victims)).returning(events.c.id)
                        )
                        .scalars()
                        .all()
                    )
                    if ids:
                        conn.execute(sa.delete(tags).where(tags.c.event_id.in_(ids)))
                total += len(ids)
                if len(ids) < batch:
                    break
            done[key.to_user_string()] = total
        if any(done.values()):
            with engine.begin() as conn:
                _reset_asset_keys(conn, None)  # only the records whose event is gone
            instance.wipe_asset_cached_status(list(cutoffs))
    finally:
        engine.dispose()
    return done


def active_runs_covering(
    instance: dg.DagsterInstance, tenant_id: str, tenant_order: Sequence[str]
) -> list[str]:
    """Ids of queued or in-progress runs whose partitions include the tenant."""
    position = {t: i for i, t in enumerate(tenant_order)}
    statuses = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    found = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=statuses)):
        if _covers(run.tags, tenant_id, position):
            found.append(run.run_id)
    return found


def _covers(tags: Mapping[str, str], tenant_id: str, position: Mapping[str, int]) -> bool:
    if run_tenant(tags) == tenant_id:
        return True
    start = tags.get("dagster/asset_partition_range_start", "")
    end = tags.get("dagster/asset_partition_range_end", "")
    tenants = [_tenant_of(k) for k in (start, end) if "|" in k]
    if len(tenants) != 2 or tenant_id not in position:
        return any(t == tenant_id for t in tenants)
    lo, hi = (position.get(t, -1) for t in tenants)
    return lo <= position[tenant_id] <= hi


def _tenant_of(key: str) -> str:
    return key.split("|")[_TENANT_PART - 1]
