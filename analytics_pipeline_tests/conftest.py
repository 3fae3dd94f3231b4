"""Shared fixtures: throwaway databases on the real PostgreSQL server, demo data, resources.

Every test session creates its own databases (random names) on the server given by
ANALYTICS_TEST_PG_URL (default: the local server on 127.0.0.1:5432) and drops them at the end, so
concurrent runs never collide.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.demo.loader import load_demo
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.sources.schema import create_oltp_schema
from analytics_pipeline.warehouse.migrate import upgrade

ADMIN_URL = os.environ.get(
    "ANALYTICS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# Fixed dates, so that figures do not depend on the day the suite runs.
# Tenants tenant-001..003 (plus 'quiet', which has no activity), 2026-03-12..2026-03-31.
TEST_SIZE = DemoSize(tenants=3, days=20, emails_per_day=120, seed=11, end_date=dt.date(2026, 3, 31))


class Databases:
    """Creates and drops databases on the test server."""

    def __init__(self) -> None:
        self.admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self, purpose: str) -> str:
        name = f"ap_test_{purpose}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
        self.created.append(name)
        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text('DROP DATABASE IF EXISTS "' + name + '" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.drop_all()


EDGE_CASES = Path(__file__).with_name("edge_cases.sql")


def terminate(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM a child as a user or supervisor would; kill it (and fail) if it hangs.

    The child must have been started with start_new_session=True: whatever it left behind in
    its process group (Dagster's code servers, say) is killed too, so no test leaves processes.
    """
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def make_oltp(url: str, size: DemoSize | None = TEST_SIZE, edge_cases: bool = False) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if size is None:
            create_oltp_schema(conn)
        else:
            load_demo(conn, size)
        if edge_cases:
            conn.exec_driver_sql(EDGE_CASES.read_text())
    engine.dispose()


def make_olap(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        upgrade(conn)
    engine.dispose()


@pytest.fixture(scope="session")
def shared_url(databases: Databases) -> str:
    """One database holding demo OLTP data and the OLAP schema. Tests must not change OLTP rows."""
    url = databases.create("shared")
    make_oltp(url, edge_cases=True)
    make_olap(url)
    return url


def truncate_olap(db: OlapDatabase) -> None:
    with db.transaction() as conn:
        for rollup in REGISTRY:
            conn.execute(sa.delete(rollup.table))


@pytest.fixture(scope="session")
def separate_olap_url(databases: Databases) -> str:
    """An OLAP-only database, for the cross-database (COPY) path."""
    url = databases.create("olap")
    make_olap(url)
    return url


@pytest.fixture
def oltp(shared_url: str) -> Iterator[OltpDatabase]:
    db = OltpDatabase(url=shared_url)
    yield db
    db.dispose()


@pytest.fixture
def olap(shared_url: str) -> Iterator[OlapDatabase]:
    db = OlapDatabase(url=shared_url)
    truncate_olap(db)
    yield db
    db.dispose()


@pytest.fixture
def fresh_url(databases: Databases) -> str:
    """A database of its own with the OLTP schema (no rows) and the OLAP schema."""
    url = databases.create("fresh")
    make_oltp(url, size=None)
    make_olap(url)
    return url
