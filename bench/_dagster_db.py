"""What a benchmark path cost in its Dagster database, read from the database itself.

Both storages under test (the project's `dagster.yaml` and stock dagster-postgres) keep the same
tables (`runs`, `event_logs`, `bulk_actions`), so one set of queries measures both. The rollup's
own time is what the runs recorded: the `seconds` metadata of a step's materialization (or
observation, or check result, wherever the pipeline puts its run-wide figures), else the seconds
in the step's own log line ("... in 2.31s").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa
import yaml
from _databases import ADMIN_URL

STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")
STOCK_STORAGE = {"postgres": {"postgres_url": {"env": "DAGSTER_PG_URL"}}}
LOG_SECONDS = re.compile(r"partition\(s\) in .* in (\d+(?:\.\d+)?)s$")


def stock_yaml(project_yaml: str) -> str:
    """The project's dagster.yaml with its storage replaced by stock dagster-postgres storage.

    Everything else (run queue, concurrency, logging) stays, so the two configurations differ
    only in what stores runs and events.
    """
    config = yaml.safe_load(project_yaml) or {}
    for key in STORAGE_KEYS:
        config.pop(key, None)
    config["storage"] = STOCK_STORAGE
    return yaml.safe_dump(config, sort_keys=False)


def database_size(name: str) -> int:
    """pg_database_size of database `name`, in bytes."""
    admin = sa.create_engine(ADMIN_URL)
    try:
        with admin.connect() as conn:
            return conn.execute(sa.text("SELECT pg_database_size(:n)"), {"n": name}).scalar_one()
    finally:
        admin.dispose()


def drop_database(name: str) -> None:
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text('DROP DATABASE IF EXISTS "' + name + '" WITH (FORCE)'))
    finally:
        admin.dispose()


@dataclass(frozen=True)
class Snapshot:
    """The Dagster database at one moment: its size, its events' bytes, its runs."""

    size: int
    event_bytes: int
    events: int
    run_ids: frozenset[str]

    @classmethod
    def take(cls, engine: sa.Engine, name: str) -> Snapshot:
        with engine.connect() as conn:
            event_bytes, events = conn.execute(
                sa.text("SELECT coalesce(sum(octet_length(event)), 0), count(*) FROM event_logs")
            ).one()
            runs = frozenset(conn.execute(sa.text("SELECT run_id FROM runs")).scalars())
        return cls(database_size(name), int(event_bytes), int(events), runs)


def materialized_partitions(engine: sa.Engine) -> dict[str, int]:
    """Per asset key (as stored, JSON text), how many distinct partitions have a materialization."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT asset_key, count(DISTINCT partition) FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key"
            )
        ).all()
    return {key: int(n) for key, n in rows}


def event_span(engine: sa.Engine, run_ids: Iterable[str]) -> float | None:
    """Seconds from the first to the last event of these runs (planned events included)."""
    ids = list(run_ids)
    if not ids:
        return None
    with engine.connect() as conn:
        span = conn.execute(
            sa.text(
                "SELECT extract(epoch FROM max(timestamp) - min(timestamp)) FROM event_logs "
                "WHERE run_id = ANY(:ids)"
            ),
            {"ids": ids},
        ).scalar()
    return None if span is None else float(span)


def run_statuses(engine: sa.Engine, run_ids: Iterable[str]) -> dict[str, str]:
    ids = list(run_ids)
    if not ids:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT run_id, status FROM runs WHERE run_id = ANY(:ids)"), {"ids": ids}
        ).all()
    return dict(rows)


def _metadata_seconds(entry: dg.EventLogEntry) -> float | None:
    event = entry.dagster_event
    if event is None:
        return None
    data = event.event_specific_data
    for holder in (
        getattr(data, "materialization", None),
        getattr(data, "asset_observation", None),
        data,
    ):
        metadata = getattr(holder, "metadata", None)
        if isinstance(metadata, Mapping) and "seconds" in metadata:
            value = getattr(metadata["seconds"], "value", metadata["seconds"])
            if isinstance(value, int | float):
                return float(value)
    return None


def _steps(conn: sa.Connection, run_id: str) -> list[str]:
    return list(
        conn.execute(
            sa.text(
                "SELECT DISTINCT step_key FROM event_logs "
                "WHERE run_id = :r AND dagster_event_type = 'STEP_SUCCESS'"
            ),
            {"r": run_id},
        ).scalars()
    )


def _seconds_from_metadata(conn: sa.Connection, run_id: str, step: str) -> float | None:
    # The step's first events that mention seconds, in id order (index idx_events_by_run_id, so
    # the scan stops early): a run over 15,000 partitions may copy its figures onto every one.
    texts = conn.execute(
        sa.text(
            "SELECT event FROM event_logs WHERE run_id = :r AND step_key = :s "
            "AND event LIKE '%seconds%' "
            "AND dagster_event_type IS DISTINCT FROM 'ASSET_MATERIALIZATION_PLANNED' "
            "ORDER BY id LIMIT 50"
        ),
        {"r": run_id, "s": step},
    ).scalars()
    for text in texts:
        seconds = _metadata_seconds(dg.deserialize_value(text, dg.EventLogEntry))
        if seconds is not None:
            return seconds
    return None


def _seconds_from_log(conn: sa.Connection, run_id: str, step: str) -> float | None:
    texts = conn.execute(
        sa.text(
            "SELECT event FROM event_logs WHERE run_id = :r AND step_key = :s "
            "AND dagster_event_type IS NULL AND event LIKE '%partition(s) in%' ORDER BY id"
        ),
        {"r": run_id, "s": step},
    ).scalars()
    for text in texts:
        match = LOG_SECONDS.search(dg.deserialize_value(text, dg.EventLogEntry).user_message)
        if match:
            return float(match.group(1))
    return None


def recorded_sql_seconds(engine: sa.Engine, run_ids: Iterable[str]) -> tuple[float, str] | None:
    """The rollup seconds the runs recorded, summed over their steps, and where they came from.

    None when some successful step recorded neither (then the caller times the rollup itself).
    """
    total, sources = 0.0, set()
    with engine.connect() as conn:
        for run_id in run_ids:
            for step in _steps(conn, run_id):
                seconds = _seconds_from_metadata(conn, run_id, step)
                if seconds is not None:
                    sources.add("metadata")
                else:
                    seconds = _seconds_from_log(conn, run_id, step)
                    if seconds is None:
                        return None
                    sources.add("log")
                total += seconds
    return total, "+".join(sorted(sources)) or "none"
