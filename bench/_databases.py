"""Benchmark databases on the server of ANALYTICS_TEST_PG_URL (default: local, 127.0.0.1:5432)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from analytics_pipeline.demo.size import DemoSize

ADMIN_URL = os.environ.get(
    "ANALYTICS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

COUNTED = ("emails", "leads", "warmup_emails", "invoices", "admin_actions")


def database(name: str, *, fresh: bool = False) -> str:
    """URL of database `name`, created if missing (dropped first when `fresh`)."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar()
            if fresh and exists:
                conn.execute(sa.text('DROP DATABASE "' + name + '" WITH (FORCE)'))
            if fresh or not exists:
                conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
    finally:
        admin.dispose()
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Dataset:
    url: str
    how: str  # "loaded in 12s" or "reused"
    counts: dict[str, int]

    def summary(self) -> str:
        return f"({self.how}): " + ", ".join(f"{k} {v:,}" for k, v in self.counts.items())


def load_dataset(name: str, size: DemoSize) -> Dataset:
    """Database `name` holding the demo dataset `size` (loaded unless exactly that data is
    there) and the analytics schema, analyzed; with its main tables' row counts."""
    # Imported here: benchmarks set ANALYTICS_PARTITIONS_START before the project is imported.
    from analytics_pipeline.demo.loader import load_demo
    from analytics_pipeline.warehouse.migrate import upgrade

    url = database(name)
    engine = sa.create_engine(url)
    started = time.perf_counter()
    try:
        with engine.begin() as conn:
            report = load_demo(conn, size)
            upgrade(conn)
        with engine.connect() as conn:
            conn.execute(sa.text("ANALYZE"))
            counts = {
                t: conn.execute(sa.select(sa.func.count()).select_from(sa.table(t))).scalar_one()
                for t in COUNTED
            }
    finally:
        engine.dispose()
    how = f"loaded in {time.perf_counter() - started:.0f}s" if report else "reused"
    return Dataset(url, how, counts)
