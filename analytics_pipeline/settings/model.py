"""The typed, frozen settings object: the environment read once, every value parsed.

`Settings.from_env()` is what `analytics_pipeline.definitions` builds the Definitions from, so a
bad value fails there, before Dagster schedules anything, with a ConfigurationError naming the
variable, its value and the expected form (settings/variable.py). Nothing in the package reads
the environment at import time; the few functions that need one value between commands (the
state home, the database URLs of a command) read it through the same declarations.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings import registry as v
from analytics_pipeline.settings.variable import TRACKING, Variable


def state_home(environ: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: $ANALYTICS_PIPELINE_HOME, else ./.analytics_pipeline."""
    return (v.HOME.read(environ) or Path.cwd() / ".analytics_pipeline").resolve()


def tracking_environ(environ: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The variables event tracking parses itself (TrackingConfig.from_env), as set."""
    wanted: list[Variable[Any]] = [var for var in v.VARIABLES if var.reader == TRACKING]
    wanted += [v.ENVIRONMENT, v.HOME]
    return {var.name: raw for var in wanted if (raw := var.raw(environ)) is not None}


@dataclass(frozen=True)
class DatabaseSettings:
    """The three database URLs of a command, all required.

    `demo_loader_url` is where `generate` and `demo` write demo rows into OLTP: the embedded
    server's superuser on the embedded default (the pipeline's own OLTP role cannot write),
    else None, meaning `oltp_url`.
    """

    oltp_url: sa.URL
    olap_url: sa.URL
    dagster_url: sa.URL
    demo_loader_url: sa.URL | None = None

    @property
    def oltp_loader_url(self) -> sa.URL:
        return self.demo_loader_url or self.oltp_url

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatabaseSettings:
        """The URLs the environment sets; OLAP defaults to OLTP. A missing one says what to do."""
        oltp = v.OLTP_URL.read(environ)
        if oltp is None:
            raise ConfigurationError(
                f"{v.OLTP_URL.name} is not set. Run through `analytics-pipeline` (which starts the "
                f"embedded PostgreSQL when no URL is given) or export {v.OLTP_URL.name}."
            )
        dagster = v.DAGSTER_PG_URL.read(environ)
        if dagster is None:
            raise ConfigurationError(
                f"{v.DAGSTER_PG_URL.name} is not set: the Dagster instance is stored in "
                "PostgreSQL (dagster.yaml). Export it, or start through `analytics-pipeline`."
            )
        return cls(oltp_url=oltp, olap_url=v.OLAP_URL.read(environ) or oltp, dagster_url=dagster)


@dataclass(frozen=True)
class AutomationSettings:
    """The tuning of the sensors and schedules (docs/OPERATIONS.md, "Refresh automation")."""

    new_tenants_per_tick: int = v.NEW_TENANTS_PER_TICK.default
    late_data_lag_seconds: float = v.LATE_DATA_LAG_SECONDS.default
    late_data_max_runs: int = v.LATE_DATA_MAX_RUNS.default
    tenants_per_run: int = v.TENANTS_PER_RUN.default
    source_observe_seconds: int = v.SOURCE_OBSERVE_SECONDS.default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AutomationSettings:
        return cls(
            new_tenants_per_tick=v.NEW_TENANTS_PER_TICK.read(environ),
            late_data_lag_seconds=v.LATE_DATA_LAG_SECONDS.read(environ),
            late_data_max_runs=v.LATE_DATA_MAX_RUNS.read(environ),
            tenants_per_run=v.TENANTS_PER_RUN.read(environ),
            source_observe_seconds=v.SOURCE_OBSERVE_SECONDS.read(environ),
        )


@dataclass(frozen=True)
class ExecutorSettings:
    """Where a run's steps execute, and the Celery profile's broker, backend and queue."""

    profile: str = v.EXECUTOR.default
    celery_broker: str = v.CELERY_BROKER.default
    celery_backend: str = v.CELERY_BACKEND.default
    celery_queue: str = v.CELERY_QUEUE.default

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ExecutorSettings:
        return cls(
            profile=v.EXECUTOR.read(environ),
            celery_broker=v.CELERY_BROKER.read(environ),
            celery_backend=v.CELERY_BACKEND.read(environ),
            celery_queue=v.CELERY_QUEUE.read(environ),
        )


@dataclass(frozen=True)
class Settings:
    """Everything the Definitions are built from, resolved from the environment at once.

    The database URLs are optional here (the resources read them when a run starts, and
    `analytics-pipeline` exports them first), but a URL that is set must parse. `pseudonym_salt`
    is kept out of the repr.
    """

    home: Path
    environment: str = v.ENVIRONMENT.default
    partitions_start: dt.date | None = None
    git_url: str | None = None
    git_branch: str = v.GIT_BRANCH.default
    oltp_url: sa.URL | None = None
    olap_url: sa.URL | None = None
    dagster_url: sa.URL | None = None
    dagster_home: str | None = None
    automation: AutomationSettings = field(default_factory=AutomationSettings)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    pseudonym_salt: str = field(default="", repr=False)

    @property
    def production(self) -> bool:
        return self.environment == v.PRODUCTION

    @property
    def olap_url_variable(self) -> str:
        """The variable the OLAP resource reads: OLAP_DATABASE_URL, else the OLTP one."""
        return v.OLAP_URL.name if self.olap_url is not None else v.OLTP_URL.name

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse every declared variable (also those Dagster or tracking read themselves, so a
        bad value fails here); the first that cannot be used raises ConfigurationError."""
        for variable in v.VARIABLES:
            variable.read(environ)
        return cls(
            home=state_home(environ),
            environment=v.ENVIRONMENT.read(environ),
            partitions_start=v.PARTITIONS_START.read(environ),
            git_url=v.GIT_URL.read(environ),
            git_branch=v.GIT_BRANCH.read(environ),
            oltp_url=v.OLTP_URL.read(environ),
            olap_url=v.OLAP_URL.read(environ),
            dagster_url=v.DAGSTER_PG_URL.read(environ),
            dagster_home=v.DAGSTER_HOME.read(environ),
            automation=AutomationSettings.from_env(environ),
            executor=ExecutorSettings.from_env(environ),
            pseudonym_salt=v.PSEUDONYM_SALT.read(environ),
        )
