"""The start-up preflight: does the role the pipeline reads OLTP with have any way to write?

Read-only transactions are a per-transaction flag (`SET TRANSACTION READ WRITE` as the first
statement undoes it); only the role's privileges make PostgreSQL refuse a write for good. So
before the pipeline reads OLTP it asks PostgreSQL what its role may do: a superuser, or INSERT,
UPDATE, DELETE or TRUNCATE on a source table (directly, through a role it belongs to, or through
pg_write_all_data), is refused in production (ANALYTICS_ENV=production) and warned about elsewhere.
docs/OPERATIONS.md ("What the OLTP role may do") has the GRANT script for a read-only role.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings.registry import ENVIRONMENT, PRODUCTION
from analytics_pipeline.sources.tables import metadata as oltp_metadata

log = logging.getLogger(__name__)

WRITE_PRIVILEGES = "INSERT, UPDATE, DELETE, TRUNCATE"
# URLs (as rendered, password included) already checked by this process: once is enough.
_checked: set[str] = set()


def write_access(conn: sa.Connection) -> tuple[str, list[str]]:
    """The connection's role, and how it could write the source tables (empty: it cannot).

    Tables that do not exist yet (an empty OLTP) are skipped.
    """
    role, superuser = conn.execute(
        sa.text("SELECT current_user, current_setting('is_superuser') = 'on'")
    ).one()
    if superuser:
        return role, ["it is a superuser"]
    writable = conn.execute(
        sa.text(
            "SELECT t FROM unnest(CAST(:tables AS text[])) AS t "
            "WHERE to_regclass(quote_ident(t)) IS NOT NULL "
            "AND has_table_privilege(quote_ident(t), :privileges) ORDER BY t"
        ),
        {"tables": sorted(oltp_metadata.tables), "privileges": WRITE_PRIVILEGES},
    ).scalars()
    return role, [f"it may write {t}" for t in writable]


def preflight(
    engine: sa.Engine, display_url: str, environ: Mapping[str, str] | None = None
) -> None:
    """Refuse (production) or warn (elsewhere) when the OLTP role can write; once per URL."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _checked:
        return
    with engine.connect() as conn:
        role, ways = write_access(conn)
    _checked.add(key)
    if not ways:
        return
    message = (
        f"the OLTP role {role!r} ({display_url}) can write the product's tables: "
        f"{'; '.join(ways)}. Read OLTP as a role with SELECT only: see docs/OPERATIONS.md, "
        "'What the OLTP role may do', for the GRANT script"
    )
    if ENVIRONMENT.read(environ) == PRODUCTION:
        _checked.discard(key)
        raise ConfigurationError(message + f" ({ENVIRONMENT.name}={PRODUCTION} refuses to run)")
    log.warning("%s (allowed outside production)", message)


def forget_checked() -> None:
    """Forget which URLs passed, so the next preflight of each asks PostgreSQL again: for a
    process that changes roles' privileges while it runs (the tests do)."""
    _checked.clear()
