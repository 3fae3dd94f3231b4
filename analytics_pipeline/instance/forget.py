"""Removing a tenant from the Dagster instance's PostgreSQL storage (the erasure, issue 14).

Dagster's public API covers part of it: `delete_run` (a run and its events),
`delete_dynamic_partition`, `wipe_asset_cached_status`, `add_run_tags`,
`update_event_log_record`. It has no way to remove a tenant's partitions from other runs'
history, nor a tenant quoted inside other runs' events (a range run's metadata, copied onto
every partition it covers, lists its tenants and previews one partition's rows). What the API
cannot do is done here in raw SQL, against the schema instance/dagster_schema.py knows and
guards (retention's deletions are instance/expired_history.py).
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
from analytics_pipeline.instance.dagster_schema import (
    dagster_engine,
    verify_known_schema,
)
from analytics_pipeline.instance.event_rows import (
    EVENTS,
    TENANT_PART,
    delete_events,
    key_part,
    reset_asset_keys,
)
from analytics_pipeline.partitions import OFFBOARDED_PARTITIONS_NAME, TENANTS_PARTITIONS_NAME
from analytics_pipeline.run_tags import EXACT_REFRESH_JOB, exact_run_tenants, run_tenant

REMOVED_ROWS = "[rows of an erased tenant removed]"
_TABLE_CLASSES = {"TableMetadataEntryData": "TextMetadataEntryData", "TableMetadataValue": None}


class _Tid(sa.types.UserDefinedType[str]):
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


def count_quotes(instance: dg.DagsterInstance, tenant_id: str) -> dict[str, int]:
    """Rows of each Dagster table whose text quotes the tenant id (non-zero tables only)."""
    engine = dagster_engine(instance)
    try:
        with engine.connect() as conn:
            return _count_quotes(conn, tenant_id, verify_known_schema(conn))
    finally:
        engine.dispose()


def _count_quotes(
    conn: sa.Connection, tenant_id: str, layout: Mapping[str, tuple[str, ...]]
) -> dict[str, int]:
    pattern = quote_pattern(tenant_id)
    counts = {}
    for name, columns in layout.items():
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
    engine = dagster_engine(instance)
    done: dict[str, int] = {}
    try:
        with engine.connect() as conn:
            layout = verify_known_schema(conn)
            deleted_runs = _delete_tenant_runs(instance, conn, tenant_id)
            done["runs_deleted"] = len(deleted_runs)
        with engine.begin() as conn:
            done.update(_delete_partition_events(conn, tenant_id))
            done["asset_keys_reset"] = reset_asset_keys(conn, quote_pattern(tenant_id))
        done["events_scrubbed"] = _scrub_events(instance, engine, tenant_id, pseudonym)
        done["run_tags_scrubbed"] = _scrub_run_tags(instance, engine, tenant_id, pseudonym)
        done["partitions_removed"] = 0
        for name in (TENANTS_PARTITIONS_NAME, OFFBOARDED_PARTITIONS_NAME):
            if instance.has_dynamic_partition(name, tenant_id):
                instance.delete_dynamic_partition(name, tenant_id)
                done["partitions_removed"] += 1
        with engine.begin() as conn:
            done["other_rows_scrubbed"] = _scrub_everything(conn, tenant_id, pseudonym, layout)
            left = _count_quotes(conn, tenant_id, layout)
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
    return key_part(column, TENANT_PART)


def _delete_partition_events(conn: sa.Connection, tenant_id: str) -> dict[str, int]:
    checks = sa.table("asset_check_executions", sa.column("partition"))
    ids = delete_events(conn, _tenant_part(EVENTS.c.partition) == tenant_id)
    gone_checks = conn.execute(
        sa.delete(checks).where(_tenant_part(checks.c.partition) == tenant_id)
    ).rowcount
    return {"partition_events_deleted": len(ids), "check_executions_deleted": gone_checks}


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


def _scrub_everything(
    conn: sa.Connection, tenant_id: str, pseudonym: str, layout: Mapping[str, tuple[str, ...]]
) -> int:
    """The catch-all: any other text that quotes the tenant (ticks, cursors, backfills)."""
    pattern = quote_pattern(tenant_id)
    scrubbed = 0
    for name, columns in layout.items():
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


def active_runs_covering(
    instance: dg.DagsterInstance, tenant_id: str, tenant_order: Sequence[str]
) -> list[str]:
    """Ids of queued or in-progress runs whose partitions include the tenant.

    A run of assets covers its partition key or range; an exact-refresh run covers the tenants
    its config lists, whether the planner or a person launched it.
    """
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
        if run.job_name == EXACT_REFRESH_JOB:
            covers = tenant_id in exact_run_tenants(run.run_config)
        else:
            covers = _covers(run.tags, tenant_id, position)
        if covers:
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
    return key.split("|")[TENANT_PART - 1]
