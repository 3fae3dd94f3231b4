"""The embedded server's pipeline roles: one that can only read OLTP, one that writes OLAP.

The embedded default keeps the product's tables (`public`, loaded by the demo as the superuser)
and the `analytics` schema in one database, as a small deployment would. The pipeline never
uses the superuser there:

- `analytics_reader` (OLTP_DATABASE_URL): LOGIN, CONNECT, USAGE on `public`, SELECT on the
  source tables, nothing else. PostgreSQL refuses its writes whatever the client sends;
- `analytics_writer` (OLAP_DATABASE_URL): owns the `analytics` schema (CREATE on the database,
  for `migrate`) and may SELECT the source tables (the in-database rollup reads them inside its
  write transaction), but may not write them either.

Both are created (or brought up to date) each time the server is started or attached to. Their
passwords are random and kept beside the superuser's (mode 0600).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.sources.tables import metadata as oltp_metadata

READER = "analytics_reader"
WRITER = "analytics_writer"
OLAP_SCHEMA = "analytics"


def passwords(path: Path) -> dict[str, str]:
    """The roles' passwords, made (and stored, mode 0600) the first time."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not all(isinstance(known.get(r), str) for r in (READER, WRITER)):
        known = {r: secrets.token_urlsafe(24) for r in (READER, WRITER)}
        path.write_text(json.dumps(known))
    path.chmod(0o600)
    # The two roles' entries, which the check above proved strings (the file holds no other).
    return {r: known[r] for r in (READER, WRITER)}


def set_password(conn: sa.Connection, role: str, password: str) -> None:
    """ALTER ROLE ... PASSWORD with the password bound, never formatted into SQL by us (ALTER
    ROLE takes no parameters: the server quotes the bound value with %L)."""
    conn.execute(
        sa.text(
            "SELECT set_config('analytics_pipeline.pw', :pw, false), "
            "set_config('analytics_pipeline.role', :role, false)"
        ),
        {"pw": password, "role": role},
    )
    conn.execute(
        sa.text(
            "DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', "
            "current_setting('analytics_pipeline.role'), "
            "current_setting('analytics_pipeline.pw')); END $$"
        )
    )
    conn.execute(sa.text("RESET analytics_pipeline.pw"))


def _grants(conn: sa.Connection) -> list[str]:
    # Identifiers cannot be bound: they are this module's constants and the server's own
    # names, quoted by the dialect.
    q = conn.dialect.identifier_preparer.quote
    db = q(conn.execute(sa.text("SELECT current_database()")).scalar_one())
    reader, writer, schema = q(READER), q(WRITER), q(OLAP_SCHEMA)
    both = f"{reader}, {writer}"
    existing = conn.execute(
        sa.text(
            "SELECT t FROM unnest(CAST(:tables AS text[])) AS t "
            "WHERE to_regclass('public.' || quote_ident(t)) IS NOT NULL ORDER BY t"
        ),
        {"tables": sorted(oltp_metadata.tables)},
    ).scalars()
    statements = [
        f"GRANT CONNECT ON DATABASE {db} TO {both}",
        f"GRANT USAGE ON SCHEMA public TO {both}",
        # Tables the demo loader creates later (as the superuser) are readable too.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {both}",
        *(f"GRANT SELECT ON public.{q(t)} TO {both}" for t in existing),
        f"GRANT CREATE ON DATABASE {db} TO {writer}",
    ]
    # A home made before these roles existed has the analytics schema owned by the superuser.
    owner = conn.execute(
        sa.text("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = :s"),
        {"s": OLAP_SCHEMA},
    ).scalar()
    if owner is not None and owner != WRITER:
        statements.append(f"ALTER SCHEMA {schema} OWNER TO {writer}")
        tables = conn.execute(
            sa.text(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :s AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
            ),
            {"s": OLAP_SCHEMA},
        ).scalars()
        statements += [f"ALTER TABLE {schema}.{q(t)} OWNER TO {writer}" for t in tables]
    return statements


def ensure_roles(admin_url: str, password_file: Path) -> dict[str, str]:
    """Create or update both roles in the database of `admin_url` (a superuser's); returns
    their passwords."""
    known = passwords(password_file)
    engine = sa.create_engine(admin_url)
    try:
        with engine.begin() as conn:
            have = set(
                conn.execute(
                    sa.text("SELECT rolname FROM pg_roles WHERE rolname IN (:r, :w)"),
                    {"r": READER, "w": WRITER},
                ).scalars()
            )
            q = conn.dialect.identifier_preparer.quote
            for role in (READER, WRITER):
                if role not in have:
                    conn.exec_driver_sql(
                        f"CREATE ROLE {q(role)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
                    )
                set_password(conn, role, known[role])
            for statement in _grants(conn):
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()
    return known
