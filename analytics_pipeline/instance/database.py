"""Which PostgreSQL holds the Dagster instance: DAGSTER_PG_URL, else the embedded server.

dagster.yaml names no URL (an `env:` setting would fail wherever DAGSTER_PG_URL is unset, as in
the temporary home `dagster dev` and `dg` copy it into): the storages ask here instead.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from analytics_pipeline.errors import ConfigurationError, EmbeddedPostgresError
from analytics_pipeline.settings import DAGSTER_PG_URL_ENV, PSYCOPG2, normalize_database_url
from analytics_pipeline.settings.registry import DAGSTER_PG_URL


def instance_database_url(configured: str | None = None) -> str:
    """The instance's URL on the psycopg2 driver dagster-postgres needs.

    `configured` is a `postgres_url` written in dagster.yaml, which wins. A problem ends the
    process with one line that says what to do: this runs inside Dagster's own commands, whose
    traceback would bury it.
    """
    try:
        if configured and configured.strip():
            url = normalize_database_url(configured, setting=DAGSTER_PG_URL_ENV, driver=PSYCOPG2)
        else:
            found = DAGSTER_PG_URL.read()
            if found is None:
                from analytics_pipeline.embedded.defaults import ensure_embedded_defaults

                ensure_embedded_defaults()
                found = DAGSTER_PG_URL.read()
            if found is None:  # the embedded server exports it; say so rather than KeyError
                raise ConfigurationError(f"{DAGSTER_PG_URL_ENV} is still not set")
            url = found
    except (ConfigurationError, EmbeddedPostgresError) as exc:
        _exit(exc)
    return url.render_as_string(hide_password=False)


def _exit(exc: Exception) -> NoReturn:
    first_line = str(exc).strip().splitlines()[0]
    print(
        f"analytics_pipeline: the Dagster instance has no database: {first_line} (set "
        f"{DAGSTER_PG_URL_ENV}, or run `analytics-pipeline embedded status` to see the embedded "
        "server)",
        file=sys.stderr,
    )
    raise SystemExit(2)
