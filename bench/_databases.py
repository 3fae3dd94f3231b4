"""Benchmark databases on the server of ANALYTICS_TEST_PG_URL (default: local, 127.0.0.1:5432)."""

from __future__ import annotations

import os

import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "ANALYTICS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


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
