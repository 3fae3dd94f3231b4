"""dagster-postgres event-log storage that keeps its connections.

The stock `PostgresEventLogStorage` opens a new connection (NullPool) for every event it stores,
and a run over N partitions stores several events per partition (planned materializations at run
creation, one at a time, then materializations and check results): each costs a login (TCP,
authentication, backend start). Profiling the demo run showed connection set-up as most of
Dagster's time. This subclass is the same storage with a small pool: at most 1 + 4 connections
per process, validated before use, recycled every 5 minutes, so that idle processes do not hold
connections for long. Selected in dagster.yaml (`event_log_storage`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster._core.storage.config import pg_config
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)


class PooledPostgresEventLogStorage(PostgresEventLogStorage):
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

    @classmethod
    def config_type(cls):
        return pg_config()

    @classmethod
    def from_config_value(
        cls, inst_data: Any, config_value: Mapping[str, Any]
    ) -> PooledPostgresEventLogStorage:
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )
