"""Where the date dimension starts: where the data starts, fixed once per deployment.

The rule (docs/OPERATIONS.md): the first date partition is

1. `ANALYTICS_PARTITIONS_START` (YYYY-MM-DD) when set: what a production deployment sets, once,
   in its environment (the day its oldest tenant's history begins);
2. else the day recorded in `<ANALYTICS_PIPELINE_HOME>/partitions_start`, which the commands write
   from the data: `demo` and `generate` the first day of the data they load, `dev` and `migrate`
   the UTC day the earliest OLTP tenant was created. A record only ever moves earlier (that adds
   partitions); moving it later would hide history that is already materialized;
3. else 2024-01-01.

The date dimension is resolved when the Definitions are built (`wiring.build_definitions`), so
a new record takes effect in the Definitions built after it (`dev` writes it before it starts
Dagster; `demo` and `generate` before they build theirs). The variable is read through the
settings registry, like every other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings import state_home
from analytics_pipeline.settings.registry import PARTITIONS_START
from analytics_pipeline.sources.schema import oltp_schema_exists
from analytics_pipeline.sources.tables import tenants

START_DATE_ENV = PARTITIONS_START.name
DEFAULT_START_DATE = dt.date(2024, 1, 1)
RECORD_FILE = "partitions_start"


def _record_path() -> Path:
    return state_home() / RECORD_FILE


def recorded_start() -> dt.date | None:
    """The day recorded in the state home, if any (a corrupt record names its file)."""
    path = _record_path()
    if not path.exists():
        return None
    raw = path.read_text().strip()
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise ConfigurationError(
            f"{path}={raw!r} is not a date; use YYYY-MM-DD (the first day partitions exist for)"
        ) from None


def partitions_start(configured: dt.date | None = None) -> dt.date:
    """The first day of the date dimension, by the rule above (`configured`: the variable's
    value as the Settings already resolved it; else it is read here)."""
    return configured or PARTITIONS_START.read() or recorded_start() or DEFAULT_START_DATE


def record_partitions_start(first_day: dt.date) -> dt.date:
    """Record where the data starts (only ever earlier); return the start now in force.

    With ANALYTICS_PARTITIONS_START set, nothing is recorded, and data before it is an error:
    its days would have no partition.
    """
    start = PARTITIONS_START.read()
    if start is not None:
        if first_day < start:
            raise ConfigurationError(
                f"the data starts on {first_day}, before {START_DATE_ENV}={start}: those days "
                f"have no partition; set {START_DATE_ENV} to {first_day} or earlier"
            )
        return start
    recorded = recorded_start()
    if recorded is None or first_day < recorded:
        path = _record_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{first_day.isoformat()}\n")
        return first_day
    return recorded


def record_start_from_oltp(oltp_url: sa.URL) -> dt.date | None:
    """Record the UTC day the earliest OLTP tenant was created; None when OLTP has no tenants."""
    engine = sa.create_engine(oltp_url)
    try:
        with engine.connect() as conn:
            if not oltp_schema_exists(conn):
                return None
            earliest = conn.execute(sa.select(sa.func.min(tenants.c.created_at))).scalar()
    finally:
        engine.dispose()
    if earliest is None:
        return None
    return record_partitions_start(earliest.astimezone(dt.UTC).date())
