"""The project's configuration: every environment variable declared once, read into one typed,
frozen `Settings` object when the Definitions are built.

- registry.py: the declarations (name, type, default, expected form, what it is for);
- variable.py: how one variable is read and refused;
- model.py: `Settings` (and its parts), `DatabaseSettings` for a command's three URLs;
- urls.py: PostgreSQL URL parsing, drivers, redaction;
- docs.py: the table in docs/OPERATIONS.md, rendered from the registry.

When no database URL is set, the command line starts the embedded PostgreSQL and exports them
before anything reads them (see `analytics_pipeline.embedded`).
"""

from __future__ import annotations

from analytics_pipeline.settings.model import (
    AutomationSettings,
    DatabaseSettings,
    ExecutorSettings,
    Settings,
    state_home,
    tracking_environ,
)
from analytics_pipeline.settings.registry import DAGSTER_PG_URL, HOME, OLAP_URL, OLTP_URL
from analytics_pipeline.settings.urls import (
    PSYCOPG2,
    PSYCOPG3,
    normalize_database_url,
    redact,
    same_database,
)

OLTP_URL_ENV = OLTP_URL.name
OLAP_URL_ENV = OLAP_URL.name
DAGSTER_PG_URL_ENV = DAGSTER_PG_URL.name
HOME_ENV = HOME.name

__all__ = [
    "DAGSTER_PG_URL_ENV",
    "HOME_ENV",
    "OLAP_URL_ENV",
    "OLTP_URL_ENV",
    "PSYCOPG2",
    "PSYCOPG3",
    "AutomationSettings",
    "DatabaseSettings",
    "ExecutorSettings",
    "Settings",
    "normalize_database_url",
    "redact",
    "same_database",
    "state_home",
    "tracking_environ",
]
