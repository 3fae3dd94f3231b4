"""dagster-postgres event-log storage that keeps its connections.

The stock `PostgresEventLogStorage` opens a new connection (NullPool) for every event it stores,
and a run over N partitions stores several events per partition (planned materializations at run
creation, one at a time, then materializations and check results): each costs a login (TCP,
authentication, backend start). Profiling the demo run showed connection set-up as most of
Dagster's time. This subclass is the same storage with a small pool: at most 1 + 4 connections
per process, validated before use, recycled every 5 minutes, so that idle processes do not hold
connections for long. Selected in dagster.yaml (`event_log_storage`).

All three storages (runs, events, schedules) find their database through
`analytics_pipeline.instance.database`: DAGSTER_PG_URL, else the embedded server, so Dagster's
own commands work in the project folder with nothing set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine

from analytics_pipeline.instance.database import instance_database_url


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
    def config_type(cls):
        return _config_type()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]):
        return cls(**_kwargs(inst_data, config_value))


class ProjectRunStorage(_ProjectDatabase, PostgresRunStorage):
    """dagster-postgres's run storage on the project's instance database."""


class ProjectScheduleStorage(_ProjectDatabase, PostgresScheduleStorage):
    """dagster-postgres's schedule storage on the project's instance database."""


class PooledPostgresEventLogStorage(_ProjectDatabase, PostgresEventLogStorage):
    """PostgresEventLogStorage with a connection pool instead of a connection per event."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
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

    def dispose(self) -> None:
        # The stock storage holds no connections, so its dispose() leaves the engine alone;
        # ours must close the pool, or every instance a long-lived process (code server,
        # daemon) creates and disposes would keep its idle connections open.
        super().dispose()
        self._engine.dispose()
