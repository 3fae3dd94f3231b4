"""Putting the demo dataset into an OLTP database, without ever overwriting real data.

A database is written to only when it has no OLTP tables yet, or when they hold an earlier demo
load (recorded in a comment on the `tenants` table). Loading the same size and seed again is a
no-op; another size or seed replaces the demo rows, in one transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict

import sqlalchemy as sa

from analytics_pipeline.demo.bulk import LOAD_ORDER, LoadReport, load
from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.errors import DemoDataError
from analytics_pipeline.progress import reporting
from analytics_pipeline.settings import redact
from analytics_pipeline.sources.schema import create_oltp_schema, oltp_schema_exists

_MARKER = "analytics_pipeline demo data "


def _marker(conn: sa.Connection) -> dict[str, object] | None:
    comment = conn.execute(sa.text("SELECT obj_description('public.tenants'::regclass)")).scalar()
    if not comment or not comment.startswith(_MARKER):
        return None
    # Only this module writes the marker, always as a JSON object (`_size_key`).
    marker: dict[str, object] = json.loads(comment[len(_MARKER) :])
    return marker


def _size_key(size: DemoSize) -> dict[str, object]:
    key = asdict(size)
    key["end_date"] = size.last_day.isoformat()
    return key


def load_demo(
    conn: sa.Connection, size: DemoSize, on_tenant: Callable[[int], None] | None = None
) -> LoadReport | None:
    """Load `size` into the OLTP database of `conn`; None when exactly that data is there.

    `on_tenant(rows)` follows the load tenant by tenant (progress)."""
    if not oltp_schema_exists(conn):
        create_oltp_schema(conn)
    else:
        marker = _marker(conn)
        has_rows = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM tenants)")).scalar()
        if marker is None and has_rows:
            raise DemoDataError(
                f"the OLTP database {redact(conn.engine.url)} already holds data that the demo did "
                "not load; refusing to overwrite it. Unset OLTP_DATABASE_URL to use the embedded "
                "database, or point it at an empty database."
            )
        if marker == _size_key(size):
            return None
        # Children first, for the foreign keys; one TRUNCATE is atomic with the reload.
        tables = ", ".join(["tenants", *LOAD_ORDER][::-1])
        conn.execute(sa.text("TRUNCATE " + tables + " RESTART IDENTITY"))
    report = load(conn, size, on_tenant)
    conn.execute(
        sa.text("SELECT set_config('analytics_pipeline.demo_marker', :m, true)"),
        {"m": _MARKER + json.dumps(_size_key(size), sort_keys=True)},
    )
    # COMMENT takes no parameters: build it server-side from the bound value with format(%L).
    conn.execute(
        sa.text(
            "DO $$ BEGIN EXECUTE format('COMMENT ON TABLE public.tenants IS %L', "
            "current_setting('analytics_pipeline.demo_marker')); END $$"
        )
    )
    return report


def load_demo_at(url: str | sa.URL, size: DemoSize) -> tuple[LoadReport | None, float]:
    """`load_demo` into the database at `url` in one transaction, with its progress tenant by
    tenant on the terminal; the report (None when that data was there) and the seconds taken."""
    engine = sa.create_engine(url)
    started = time.perf_counter()
    try:
        with engine.begin() as conn, reporting("OLTP load", size.tenants, "tenants") as progress:
            report = load_demo(conn, size, on_tenant=lambda rows: progress.advance(1, rows))
    finally:
        engine.dispose()
    return report, time.perf_counter() - started
