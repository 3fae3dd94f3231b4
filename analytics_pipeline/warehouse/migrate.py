"""Creating and upgrading the `analytics` schema, which the pipeline owns.

- A table that does not exist yet is created from its definition (`olap_table`), comments and
  grain index included. Adding an OLAP table therefore needs no migration.
- A change to an existing table is a numbered step in `MIGRATIONS`, applied once, in order, and
  recorded in `analytics.schema_migrations`. On a fresh database the tables are created in their
  current form and every step is recorded as applied without running.
- Afterwards every table is compared with its definition; a difference is a SchemaError naming
  the table and column, so a forgotten migration shows up before a run writes anything.

All of it runs in one transaction under an advisory lock, so concurrent callers are safe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from analytics_pipeline.errors import SchemaError
from analytics_pipeline.rollups.schema import SCHEMA
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.warehouse.erasures import create_erasures, erasures


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[sa.Connection], None]


# Append-only. Each step alters tables that existed before it; see docs/OPERATIONS.md.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "add analytics.erasures (tenant erasure records)", create_erasures),
)


def olap_tables(rollups: Sequence[Rollup] = REGISTRY) -> list[sa.Table]:
    """Every OLAP table the pipeline owns: the tables of `rollups` (by default every registered
    one), and the erasure records."""
    return [*(r.table for r in rollups), erasures]


_LOCK_KEY = 0x616E616C  # arbitrary, fixed: "anal" in ASCII

_migrations = sa.Table(
    "schema_migrations",
    sa.MetaData(schema=SCHEMA),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.TIMESTAMP(timezone=True), server_default=sa.func.now()),
)


def upgrade(conn: sa.Connection, rollups: Sequence[Rollup] = REGISTRY) -> list[str]:
    """Bring the schema to the current definitions of `rollups` (by default every registered
    table); return what was done, one line per change."""
    done: list[str] = []
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
    conn.execute(sa.schema.CreateSchema(SCHEMA, if_not_exists=True))
    inspector = sa.inspect(conn)
    fresh = not inspector.has_table(_migrations.name, schema=SCHEMA)
    _migrations.create(conn, checkfirst=True)
    applied = set(conn.execute(sa.select(_migrations.c.version)).scalars())
    for step in MIGRATIONS:
        if step.version in applied:
            continue
        if not fresh:
            step.apply(conn)
            done.append(f"migration {step.version}: {step.description}")
        conn.execute(
            sa.insert(_migrations).values(version=step.version, description=step.description)
        )
    existing = set(sa.inspect(conn).get_table_names(schema=SCHEMA))
    for table in olap_tables(rollups):
        if table.name not in existing:
            table.create(conn)
            done.append(f"created {SCHEMA}.{table.name}")
    verify(conn, rollups)
    return done


def upgrade_database(url: sa.URL) -> list[str]:
    """`upgrade` in its own transaction on the database at `url`."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            return upgrade(conn)
    finally:
        engine.dispose()


def verify(conn: sa.Connection, rollups: Sequence[Rollup] = REGISTRY) -> None:
    """Raise SchemaError unless every OLAP table exists with its defined columns and types."""
    inspector = sa.inspect(conn)
    existing = set(inspector.get_table_names(schema=SCHEMA))
    for table in olap_tables(rollups):
        if table.name not in existing:
            raise SchemaError(
                f"table {SCHEMA}.{table.name} does not exist in the OLAP database. Run "
                "`analytics-pipeline migrate` (with OLAP_DATABASE_URL set) to create it."
            )
        actual = {c["name"]: c for c in inspector.get_columns(table.name, schema=SCHEMA)}
        for col in table.columns:
            found = actual.get(col.name)
            if found is None:
                raise SchemaError(
                    f"{SCHEMA}.{table.name} has no column {col.name!r}. An upgrade step is "
                    "missing: run `analytics-pipeline migrate`, or add a Migration for it."
                )
            want = col.type.compile(dialect=conn.dialect)
            have = found["type"].compile(dialect=conn.dialect)
            if want != have:
                raise SchemaError(
                    f"{SCHEMA}.{table.name}.{col.name} is {have} in the database but {want} in "
                    "its definition; add a Migration that converts it."
                )
