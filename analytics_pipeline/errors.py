"""The project's own exceptions.

Every message names what was wrong (the table, tenant, date or value) and what to do about it, so
that a failed run in the Dagster UI can be acted on without reading the code.
"""

from __future__ import annotations


class AnalyticsPipelineError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigurationError(AnalyticsPipelineError):
    """A setting (environment variable, resource field, CLI option) has a value we cannot use."""


class InvalidPartitionKeyError(AnalyticsPipelineError, ValueError):
    """A tenant id or (tenant, date) partition key that Dagster or the tables cannot hold."""


class SchemaError(AnalyticsPipelineError):
    """A database lacks the tables or columns the pipeline expects, or has an unknown version."""


class TransientError(AnalyticsPipelineError):
    """Marks a failure that a later attempt can fix (lost connection, server restarting,
    serialization failure, deadlock, lock wait timeout, a standby's recovery conflict): callers
    retry these with backoff and fail at once on anything else. A type, not a flag, so that
    `except TransientError` says what it means."""


class RollupError(AnalyticsPipelineError):
    """Computing or writing an OLAP table failed; the previous rows were left in place."""

    @property
    def transient(self) -> bool:
        return isinstance(self, TransientError)


class TransientRollupError(RollupError, TransientError):
    """A refresh failed for a reason that may go away on its own; it will be retried."""


class DataQualityError(RollupError):
    """Freshly computed rows broke an invariant; the transaction was rolled back.

    Carries what the asset check reports: the check, the rule, and where it broke.
    """

    def __init__(
        self, message: str, *, check_name: str, rule: str, table: str, tenant: str, date: object
    ) -> None:
        super().__init__(message)
        self.check_name = check_name
        self.rule = rule
        self.table = table
        self.tenant = tenant
        self.date = date

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only fields: the default pickling (positional args) would lose them, and
        # Dagster sends errors across processes.
        return (
            _rebuild,
            (
                type(self),
                str(self),
                {
                    "check_name": self.check_name,
                    "rule": self.rule,
                    "table": self.table,
                    "tenant": self.tenant,
                    "date": self.date,
                },
            ),
        )


class TenantLifecycleError(AnalyticsPipelineError):
    """An erasure or retention step was refused (a run of the tenant is active, the tenant is
    still active in OLTP, Dagster's schema is not the one the eraser knows) or could not finish."""


class EmbeddedPostgresError(AnalyticsPipelineError):
    """The embedded PostgreSQL server could not be started, attached to or stopped."""


class DemoDataError(AnalyticsPipelineError):
    """The demo generator refused to write, or was given sizes it cannot produce."""


class EventContractError(AnalyticsPipelineError, ValueError):
    """An event name the registry does not know, or properties that break its contract.

    Raised to the caller in development and tests; in production the facade reports it (an
    error log and a counter) and still sends the event, marked, so that nothing is lost.
    """

    def __init__(self, message: str, *, event: str) -> None:
        super().__init__(message)
        self.event = event

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), str(self), {"event": self.event}))


def _rebuild(cls: type[Exception], message: str, fields: dict[str, object]) -> Exception:
    """Unpickle an exception whose constructor takes keyword-only fields."""
    return cls(message, **fields)
