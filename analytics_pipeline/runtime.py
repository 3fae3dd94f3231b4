"""Process set-up shared by the command line: database URLs, the embedded default, DAGSTER_HOME.

Each of OLTP_DATABASE_URL and DAGSTER_PG_URL that is not set falls back to the embedded
PostgreSQL, which is then started (or attached to) for the life of the command; OLAP_DATABASE_URL
falls back to the OLTP URL, except on the embedded default, where OLTP is read as
`analytics_reader` and OLAP written as `analytics_writer` (embedded/roles.py). The resolved URLs
are exported, so every child process (the Dagster webserver, daemon and run workers) sees the
same databases. Commands that run the pipeline first check that the OLTP role cannot write.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.server import EmbeddedPostgres
from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.resources.connection_errors import connection_problem
from analytics_pipeline.resources.oltp_role import preflight
from analytics_pipeline.settings import (
    DAGSTER_PG_URL_ENV,
    OLTP_URL_ENV,
    DatabaseSettings,
    normalize_database_url,
    redact,
)
from analytics_pipeline.settings import state_home as state_home  # cli.py imports it from here
from analytics_pipeline.settings.registry import DAGSTER_HOME, DAGSTER_PG_URL, OLTP_URL

log = logging.getLogger(__name__)

DAGSTER_YAML = "dagster.yaml"
WORKSPACE_YAML = "workspace.yaml"


def project_file(name: str) -> Path:
    """A top-level project file (dagster.yaml, workspace.yaml) in the working folder."""
    path = Path.cwd() / name
    if not path.exists():
        raise ConfigurationError(
            f"{name} not found in {Path.cwd()}: run analytics-pipeline from the project's folder "
            "(where pyproject.toml, dagster.yaml and workspace.yaml are)"
        )
    return path


@contextlib.contextmanager
def _reachable(url: sa.URL, setting: str) -> Iterator[sa.Engine]:
    """An engine on `url` that has connected once; a ConfigurationError naming `setting` if it
    cannot."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        try:
            with engine.connect():
                pass
        except sa.exc.DBAPIError as exc:
            raise ConfigurationError(
                f"cannot use {setting} ({redact(url)}): {connection_problem(exc)}"
            ) from None
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def environment(*, need_dagster_home: bool = True) -> Iterator[DatabaseSettings]:
    """Resolve (and export) the databases for this command; stop the embedded server after."""
    home = state_home()
    embedded: EmbeddedPostgres | None = None
    demo_loader: str | None = None
    if not OLTP_URL.raw() or not DAGSTER_PG_URL.raw():
        embedded = EmbeddedPostgres(home / "postgres")
        embedded.start()
        demo_loader = embedded.export_default_urls()
    try:
        settings = DatabaseSettings.from_env()
        if demo_loader is not None:
            settings = dataclasses.replace(
                settings, demo_loader_url=normalize_database_url(demo_loader, setting="embedded")
            )
        if need_dagster_home:
            # Up front, so a bad URL is one line now, not Dagster's minute of retries; and before
            # anything reads OLTP, a role that can write is refused in production.
            with _reachable(settings.dagster_url, DAGSTER_PG_URL_ENV):
                pass
            with _reachable(settings.oltp_url, OLTP_URL_ENV) as engine:
                preflight(engine, redact(settings.oltp_url))
        # Children read the variable itself: hand them the driver dagster-postgres needs.
        os.environ[DAGSTER_PG_URL_ENV] = settings.dagster_url.render_as_string(hide_password=False)
        if need_dagster_home and DAGSTER_HOME.read() is None:
            dagster_home = home / "dagster_home"
            dagster_home.mkdir(parents=True, exist_ok=True)
            # The project's dagster.yaml is the configuration; DAGSTER_HOME only holds a copy of
            # it next to Dagster's local files, which stay out of the source tree.
            shutil.copyfile(project_file(DAGSTER_YAML), dagster_home / DAGSTER_YAML)
            os.environ[DAGSTER_HOME.name] = str(dagster_home)
        log.info(
            "OLTP %s, OLAP %s, Dagster %s",
            redact(settings.oltp_url),
            redact(settings.olap_url),
            redact(settings.dagster_url),
        )
        yield settings
    finally:
        if embedded is not None:
            embedded.stop()
