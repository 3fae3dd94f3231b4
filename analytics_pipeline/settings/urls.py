"""PostgreSQL URLs as the settings accept them: parsed, moved onto the right driver, redacted."""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError

# SQLAlchemy driver names we accept, and what each is rewritten to. The pipeline streams rows with
# psycopg 3's COPY API, so its URLs end up on that driver whatever the user wrote. The Dagster
# instance needs psycopg2: dagster-postgres sends `NOTIFY channel, %(id)s`, which only works with
# client-side binding (psycopg 3 binds on the server and PostgreSQL rejects it).
PSYCOPG3 = "postgresql+psycopg"
PSYCOPG2 = "postgresql+psycopg2"
_ACCEPTED_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}
URL_FORM = "postgresql://user:password@host:5432/dbname"

# The password of `user:password@`, in text that is not a URL SQLAlchemy can parse (so it cannot
# render it redacted): masked before the text goes into a message.
_PASSWORD = re.compile(r"(?<=:)[^:@/]*(?=@)")


def normalize_database_url(raw: str, *, setting: str, driver: str = PSYCOPG3) -> sa.URL:
    """Parse a PostgreSQL URL and move it onto `driver` (psycopg 3 unless told otherwise).

    `setting` names the variable the value came from, for the error message. The password never
    appears in a message.
    """
    try:
        url = sa.make_url(raw.strip())
    except Exception as exc:  # sqlalchemy raises ArgumentError, but be strict about any parse error
        shown = _PASSWORD.sub("***", raw.strip())
        raise ConfigurationError(
            f"{setting} is not a database URL ({type(exc).__name__}): {shown!r}; expected the "
            f"form {URL_FORM}"
        ) from None
    if url.drivername not in _ACCEPTED_DRIVERS:
        raise ConfigurationError(
            f"{setting} uses the driver {url.drivername!r} (in {redact(url)!r}); this pipeline "
            f"needs PostgreSQL: use a URL of the form {URL_FORM}"
        )
    if not url.database:
        raise ConfigurationError(
            f"{setting} ({redact(url)}) names no database; add one after the host, e.g. "
            "postgresql://host:5432/analytics"
        )
    return url.set(drivername=driver)


def database_url(setting: str, driver: str = PSYCOPG3) -> Callable[[str], sa.URL | None]:
    """A parser of the variable `setting`'s URL, onto `driver` (for settings/registry.py)."""

    def parse(raw: str) -> sa.URL | None:
        return normalize_database_url(raw, setting=setting, driver=driver)

    return parse


def redact(url: sa.URL | str) -> str:
    """The URL as it may be logged: with the password masked."""
    if isinstance(url, str):
        url = sa.make_url(url)
    return url.render_as_string(hide_password=True)


def same_database(a: sa.URL, b: sa.URL) -> bool:
    """Whether two URLs name the same database on the same server (credentials aside)."""

    def where(u: sa.URL) -> tuple[str, int, str | None, object]:
        return (u.host or "", u.port or 5432, u.database, u.query.get("host", ""))

    return where(a) == where(b)
