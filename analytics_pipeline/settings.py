"""Where the pipeline's databases are, from the contract's environment variables.

`OLTP_DATABASE_URL`, `OLAP_DATABASE_URL` (defaults to the OLTP one) and `DAGSTER_PG_URL`. When none
is set, the command line starts the embedded PostgreSQL and exports all three before anything
else reads them (see `analytics_pipeline.embedded`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError

OLTP_URL_ENV = "OLTP_DATABASE_URL"
OLAP_URL_ENV = "OLAP_DATABASE_URL"
DAGSTER_PG_URL_ENV = "DAGSTER_PG_URL"
HOME_ENV = "ANALYTICS_PIPELINE_HOME"

# SQLAlchemy driver names we accept, and what each is rewritten to. The pipeline streams rows with
# psycopg 3's COPY API, so its URLs end up on that driver whatever the user wrote. The Dagster
# instance needs psycopg2: dagster-postgres sends `NOTIFY channel, %(id)s`, which only works with
# client-side binding (psycopg 3 binds on the server and PostgreSQL rejects it).
PSYCOPG3 = "postgresql+psycopg"
PSYCOPG2 = "postgresql+psycopg2"
_ACCEPTED_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"}


def normalize_database_url(raw: str, *, setting: str, driver: str = PSYCOPG3) -> sa.URL:
    """Parse a PostgreSQL URL and move it onto `driver` (psycopg 3 unless told otherwise).

    `setting` names the variable the value came from, for the error message. The password never
    appears in a message.
    """
    try:
        url = sa.make_url(raw.strip())
    except Exception as exc:  # sqlalchemy raises ArgumentError, but be strict about any parse error
        raise ConfigurationError(
            f"{setting} is not a database URL ({type(exc).__name__}); expected the form "
            "postgresql://user:password@host:5432/dbname"
        ) from None
    if url.drivername not in _ACCEPTED_DRIVERS:
        raise ConfigurationError(
            f"{setting} uses the driver {url.drivername!r}; this pipeline needs PostgreSQL: "
            "use a URL starting with postgresql://"
        )
    if not url.database:
        raise ConfigurationError(
            f"{setting} ({url.render_as_string(hide_password=True)}) names no database; "
            "add one after the host, e.g. postgresql://host:5432/analytics"
        )
    return url.set(drivername=driver)


def redact(url: sa.URL | str) -> str:
    """The URL as it may be logged: with the password masked."""
    if isinstance(url, str):
        url = sa.make_url(url)
    return url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class DatabaseSettings:
    """The three database URLs, resolved from the environment.

    `demo_loader_url` is where `generate` and `demo` write demo rows into OLTP: the embedded
    server's superuser on the embedded default (the pipeline's own OLTP role cannot write),
    else None, meaning `oltp_url`.
    """

    oltp_url: sa.URL
    olap_url: sa.URL
    dagster_url: sa.URL
    demo_loader_url: sa.URL | None = None

    @property
    def oltp_loader_url(self) -> sa.URL:
        return self.demo_loader_url or self.oltp_url

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DatabaseSettings:
        env = os.environ if environ is None else environ
        oltp = env.get(OLTP_URL_ENV, "").strip()
        if not oltp:
            raise ConfigurationError(
                f"{OLTP_URL_ENV} is not set. Run through `analytics-pipeline` (which starts the "
                f"embedded PostgreSQL when no URL is given) or export {OLTP_URL_ENV}."
            )
        olap = env.get(OLAP_URL_ENV, "").strip() or oltp
        dagster = env.get(DAGSTER_PG_URL_ENV, "").strip()
        if not dagster:
            raise ConfigurationError(
                f"{DAGSTER_PG_URL_ENV} is not set: the Dagster instance is stored in PostgreSQL "
                "(dagster.yaml). Export it, or start through `analytics-pipeline`."
            )
        return cls(
            oltp_url=normalize_database_url(oltp, setting=OLTP_URL_ENV),
            olap_url=normalize_database_url(olap, setting=OLAP_URL_ENV),
            dagster_url=normalize_database_url(
                dagster, setting=DAGSTER_PG_URL_ENV, driver=PSYCOPG2
            ),
        )


def same_database(a: sa.URL, b: sa.URL) -> bool:
    """Whether two URLs name the same database on the same server (credentials aside)."""

    def where(u: sa.URL) -> tuple:
        return (u.host or "", u.port or 5432, u.database, u.query.get("host", ""))

    return where(a) == where(b)
