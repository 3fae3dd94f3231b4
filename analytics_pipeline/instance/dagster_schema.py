"""The Dagster PostgreSQL schema our raw SQL is written against, and the guard refusing others.

Dagster's public API cannot drop single partitions' history nor remove a tenant quoted inside
other runs' events, so instance/forget.py and instance/expired_history.py do it in raw SQL. Raw
SQL depends on Dagster's schema, so `KNOWN_TEXT_COLUMNS` lists every table of it and every
column that can hold text. `verify_known_schema` refuses to run on any other schema, and a test
(test_tenant_erasure.py) fails when a Dagster upgrade changes it: then review this module and
the two that write with it.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.errors import TenantLifecycleError

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


# The same database on the event storage's compact layout (instance/compact_events.py):
# `event_logs` and `asset_event_tags` are views over these tables.
COMPACT_TEXT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    **{t: c for t, c in KNOWN_TEXT_COLUMNS.items() if t not in ("event_logs", "asset_event_tags")},
    "event_log_rows": KNOWN_TEXT_COLUMNS["event_logs"],
    "asset_event_tag_rows": KNOWN_TEXT_COLUMNS["asset_event_tags"],
    "event_log_templates": (
        "asset_key",
        "dagster_event_type",
        "pieces",
        "run_id",
        "step_key",
        "tag_keys",
    ),
    "event_log_compact": ("partition", "vals"),
}


def dagster_engine(instance: dg.DagsterInstance) -> sa.Engine:
    """An engine on the one PostgreSQL database that holds the instance's runs and events."""
    urls = {
        getattr(s, "postgres_url", None)
        for s in (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    }
    url = urls.pop()
    if url is None or urls:  # a storage that is not PostgreSQL, or storages in two databases
        raise TenantLifecycleError(
            "erasing from Dagster needs its runs, events and schedules in one PostgreSQL "
            "database (dagster.yaml as shipped); this instance has "
            f"{type(instance.event_log_storage).__name__}: erase by hand or fix the instance"
        )
    return sa.create_engine(url)


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


def verify_known_schema(conn: sa.Connection) -> Mapping[str, tuple[str, ...]]:
    """Refuse to touch a Dagster schema this module was not written against; else its tables
    and text columns (`KNOWN_TEXT_COLUMNS`, or `COMPACT_TEXT_COLUMNS` on the compact layout)."""
    live = live_text_columns(conn)
    for layout in (COMPACT_TEXT_COLUMNS, KNOWN_TEXT_COLUMNS):
        if live == {t: tuple(sorted(c)) for t, c in layout.items()}:
            return layout
    known = {t: tuple(sorted(c)) for t, c in KNOWN_TEXT_COLUMNS.items()}
    if live != known:
        added = sorted(set(live.items()) - set(known.items()))
        gone = sorted(set(known.items()) - set(live.items()))
        raise TenantLifecycleError(
            "the Dagster database's schema is not the one "
            "analytics_pipeline/instance/dagster_schema.py knows "
            f"(new or changed: {added}; missing: {gone}). A Dagster upgrade changed it: review "
            "that module and instance/forget.py (which tables can quote a tenant) before "
            "erasing anything"
        )
    return KNOWN_TEXT_COLUMNS
