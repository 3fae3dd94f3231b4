"""The OLTP and OLAP databases as Dagster resources over a pooled SQLAlchemy engine.

`OltpDatabase` hands out read-only, repeatable-read transactions, and its engine is read-only by
default; what makes the product's database safe is the role it connects as, which a preflight
checks before the first read (see `oltp_role` and docs/OPERATIONS.md). `OlapDatabase` hands out
ordinary transactions that commit on success and roll back on any error, so a failed rollup
leaves the old rows in place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import sqlalchemy as sa
from pydantic import Field, PrivateAttr, field_validator
from sqlalchemy.dialects.postgresql import ARRAY

from analytics_pipeline.resources.connection_errors import connection_problem, is_transient
from analytics_pipeline.resources.oltp_role import preflight
from analytics_pipeline.settings import normalize_database_url, redact, same_database

_WORK_MEM = re.compile(r"^[1-9][0-9]*(kB|MB|GB)$")


# The resource is its own value (no `create_resource`): the type argument says so to the checker.
class _PostgresResource(dg.ConfigurableResource["_PostgresResource"]):
    url: str = Field(
        description=(
            "SQLAlchemy URL of the database, normally from an environment variable "
            "(dg.EnvVar) so the password is neither stored in code nor shown in the UI."
        )
    )
    statement_timeout_ms: int = Field(
        default=30 * 60 * 1000,
        ge=0,
        description="Server-side statement_timeout in milliseconds (0 disables it).",
    )
    lock_timeout_ms: int = Field(
        default=60 * 1000,
        ge=0,
        description="How long a statement may wait for a lock, in milliseconds (0: forever).",
    )
    work_mem: str = Field(
        default="64MB",
        description="PostgreSQL work_mem for this pipeline's sessions (e.g. 64MB): memory per "
        "sort or hash before it spills to disk.",
    )
    pool_size: int = Field(default=2, ge=1, le=50, description="Connections kept in the pool.")
    application_name: str = Field(
        default="analytics_pipeline",
        description="Shown in pg_stat_activity, so DBAs can tell the pipeline's sessions apart.",
    )

    _engine: sa.Engine | None = PrivateAttr(default=None)

    @field_validator("work_mem")
    @classmethod
    def _check_work_mem(cls, value: str) -> str:
        if not _WORK_MEM.match(value):
            raise ValueError(
                f"work_mem {value!r} is not a PostgreSQL memory size; use a whole number with "
                "kB, MB or GB, e.g. '64MB'"
            )
        return value

    @property
    def sqlalchemy_url(self) -> sa.URL:
        return normalize_database_url(self.url, setting=f"{type(self).__name__}.url")

    @property
    def display_url(self) -> str:
        """The URL with its password masked: the only form that may be logged."""
        return redact(self.sqlalchemy_url)

    @property
    def engine(self) -> sa.Engine:
        return self._pooled_engine()

    def _pooled_engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(
                self.sqlalchemy_url,
                pool_size=self.pool_size,
                max_overflow=0,
                pool_pre_ping=True,
                connect_args={
                    "application_name": self.application_name,
                    # Every session works in UTC, so a "day" never depends on the server's zone.
                    "options": (
                        f"-c statement_timeout={self.statement_timeout_ms} "
                        f"-c lock_timeout={self.lock_timeout_ms} "
                        f"-c work_mem={self.work_mem} -c TimeZone=UTC"
                    ),
                },
            )
        return self._engine

    def is_same_database(self, other: _PostgresResource) -> bool:
        """Whether both resources point at one database, so rows need not leave it."""
        return same_database(self.sqlalchemy_url, other.sqlalchemy_url)

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        self.dispose()


class OltpDatabase(_PostgresResource):
    """The product's OLTP database: the pipeline's source, only ever read.

    Before its first use in a process it checks that its role cannot write the source tables
    (`oltp_role.preflight`): refused in production, a warning elsewhere.
    """

    @property
    def engine(self) -> sa.Engine:
        """The pool, for its metrics and reads: every transaction on it is read-only unless a
        statement says otherwise, and then the role's privileges refuse the write."""
        return self._pooled_engine().execution_options(postgresql_readonly=True)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        try:
            self.preflight()
        except sa.exc.DBAPIError as exc:
            if not is_transient(exc):
                raise
            # An OLTP that is down now may be back for the step's retries: the refresh itself
            # classifies the error and retries; the role is checked again at the next start.
            if context.log is not None:  # Dagster always gives one during a run
                context.log.warning(
                    f"OLTP role preflight skipped, OLTP unreachable: {connection_problem(exc)}"
                )

    def preflight(self) -> None:
        """Refuse (production) or warn (elsewhere) when this role can write the product's
        tables."""
        preflight(self._pooled_engine(), self.display_url)

    @contextmanager
    def read_snapshot(self, snapshot: str | None = None) -> Iterator[sa.Connection]:
        """A read-only, repeatable-read transaction: one consistent snapshot for every query in it.

        With `snapshot` (what `pg_export_snapshot()` returned in another, still open transaction
        of the same database), the transaction reads exactly that transaction's snapshot.
        Any attempt to write inside it fails in PostgreSQL itself ("cannot execute ... in a
        read-only transaction"); this resource offers no other way in.
        """
        with (
            self._pooled_engine()
            .connect()
            .execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True) as conn,
            conn.begin(),
        ):
            if snapshot is not None:
                if not _SNAPSHOT_ID.fullmatch(snapshot):
                    raise ValueError(
                        f"snapshot {snapshot!r} is not a PostgreSQL snapshot id (as "
                        "pg_export_snapshot() returns, e.g. 00000003-0000001B-1)"
                    )
                # A utility statement takes no bound parameter; the id was checked above.
                conn.exec_driver_sql("SET TRANSACTION SNAPSHOT '" + snapshot + "'")
            yield conn


# What pg_export_snapshot() returns: hexadecimal virtual transaction id parts and a counter.
_SNAPSHOT_ID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{8}-[0-9]+")


class OlapDatabase(_PostgresResource):
    """The OLAP database holding the `analytics` schema that dashboards read."""

    @contextmanager
    def transaction(
        self, *, lock_keys: Sequence[str] = (), isolation_level: str = "READ COMMITTED"
    ) -> Iterator[sa.Connection]:
        """A read-write transaction, committed on success and rolled back on any exception.

        `lock_keys` are taken as session advisory locks, in sorted order (so that two callers
        cannot deadlock), *before* the transaction starts, and released after it ends. Taking
        them first matters under REPEATABLE READ: the snapshot is then taken after any
        competing writer has committed, so this transaction sees (and replaces) its rows.
        """
        with self.engine.connect() as conn:
            if lock_keys:
                self._lock(conn, sorted(set(lock_keys)))
            try:
                conn.execution_options(isolation_level=isolation_level)
                with conn.begin():
                    yield conn
            finally:
                if lock_keys:
                    try:
                        conn.execute(sa.select(sa.func.pg_advisory_unlock_all()))
                        conn.commit()
                    except sa.exc.DBAPIError:
                        # A broken connection has lost its locks with its session anyway.
                        conn.invalidate()

    def _lock(self, conn: sa.Connection, keys: list[str]) -> None:
        key = sa.func.unnest(sa.bindparam("keys", keys, type_=ARRAY(sa.Text))).alias("k")
        # Wait as long as a statement may run: the holder is another refresh of the same rows.
        conn.execute(
            sa.select(sa.func.set_config("lock_timeout", str(self.statement_timeout_ms), True))
        )
        # unnest yields the sorted array in order, so the locks are taken in that order.
        conn.execute(
            sa.select(
                sa.func.count(sa.func.pg_advisory_lock(sa.func.hashtextextended(key.column, 0)))
            ).select_from(key)
        )
        conn.commit()
