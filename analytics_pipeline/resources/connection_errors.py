"""Telling a database error that needs a fix from one that may heal by itself.

A wrong database name, an unknown role or a bad password fails every attempt the same way:
retrying it only delays the failure (the rollups' 5 + 10 + 20 s backoff, per step). Such errors
are recognised by SQLSTATE when PostgreSQL sent one, and by the text psycopg reports when the
connection failed before any SQLSTATE could be read (libpq's start-up errors carry none).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

# SQLSTATE -> what to fix. 3D000 invalid_catalog_name, 28000 invalid_authorization_specification
# (also "role does not exist" and a missing pg_hba.conf entry), 28P01 invalid_password.
_PERMANENT_STATES = {
    "3D000": "the database does not exist: fix the database name in the URL, or create it",
    "28000": "the role may not log in: fix the user name in the URL, create the role, or allow "
    "it in pg_hba.conf",
    "28P01": "authentication failed: fix the password in the URL (or the role's password)",
}
_PERMANENT_TEXT = [
    (re.compile(r'database "[^"]*" does not exist'), "3D000"),
    (re.compile(r'role "[^"]*" does not exist'), "28000"),
    (re.compile(r"no pg_hba\.conf entry"), "28000"),
    (re.compile(r"(password|SCRAM|ident|peer) authentication failed"), "28P01"),
    (re.compile(r"authentication failed for user"), "28P01"),
]


def _orig(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def permanent_connection_fix(exc: BaseException) -> str | None:
    """What to fix when `exc` is a connection error no retry can cure; None otherwise."""
    orig = _orig(exc)
    state = getattr(orig, "sqlstate", None)
    if state in _PERMANENT_STATES:
        return _PERMANENT_STATES[state]
    if state is None:
        text = str(orig)
        for pattern, code in _PERMANENT_TEXT:
            if pattern.search(text):
                return _PERMANENT_STATES[code]
    return None


def connection_problem(exc: BaseException) -> str:
    """One line for an operator: the driver's first line, and the fix when one is known."""
    orig = _orig(exc)
    first = next((ln.strip() for ln in str(orig).splitlines() if ln.strip()), type(orig).__name__)
    fix = permanent_connection_fix(exc)
    return f"{first} ({fix})" if fix else first


# SQLSTATEs worth another attempt: serialization failure (which is also how a hot standby
# cancels a query that conflicts with recovery: docs/DEPLOYMENT.md), deadlock, lock wait timeout,
# server shutting down or starting, and the connection exceptions (class 08).
_TRANSIENT_STATES = {"40001", "40P01", "55P03", "57P01", "57P02", "57P03"}


def is_transient(exc: sa.exc.DBAPIError) -> bool:
    """Whether a database error may go away on its own (retry) or needs a fix (fail now)."""
    if permanent_connection_fix(exc) is not None:
        # A wrong database, role or password fails every attempt alike: fail now, say the fix.
        return False
    if exc.connection_invalidated:
        return True
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:
        # No SQLSTATE: the server never answered (refused, reset, timed out connecting).
        return isinstance(exc, sa.exc.OperationalError)
    return state in _TRANSIENT_STATES or state.startswith("08")
