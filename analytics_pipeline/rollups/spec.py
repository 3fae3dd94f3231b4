"""The declarative definition of one OLAP table."""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import contract_columns
from analytics_pipeline.rollups.sql import Windows


@dataclass(frozen=True)
class Invariant:
    """A rule every written row must satisfy, as a SQL condition over the target table's row."""

    name: str
    condition: Callable[[sa.Table], sa.ColumnElement[bool]]
    description: str


@dataclass(frozen=True)
class Reconciliation:
    """How to count, straight from OLTP, the source rows one partition summarises.

    `indexed` says the product has an index on (tenant_id, timestamp): the count is then one
    index-only probe per (tenant, day), far cheaper than grouping the rows again; otherwise the
    rows are grouped by day. `where` narrows the rows (e.g. invoices that are not void).

    `column` is the table's column whose sum over a partition's rows must equal that count
    (e.g. `sent` for the emails sent); None means the partition's number of rows must.
    """

    source: sa.Table
    timestamp: str
    indexed: bool = False
    where: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None
    column: str | None = None


@dataclass(frozen=True)
class ChangeTracking:
    """Which partitions a changed source row affects, for the late-data sensor.

    `changed_at` moves on every insert and update of the row (updated_at; recorded_at for the
    append-only admin_actions). The row affects the UTC day of each column in `day_of`, and, with
    `span` (start, end), every day from start up to end (or today when end is NULL).
    """

    source: sa.Table
    day_of: tuple[str, ...] = ()
    span: tuple[str, str] | None = None
    changed_at: str = "updated_at"


@dataclass(frozen=True)
class Retention:
    """How long a table keeps its partitions: `months` calendar months back from today.

    A partition whose UTC date is before `cutoff(today)` has expired; the retention job
    (governance/retention.py) deletes it. `reason` says why the period was chosen, for the UI
    and the data dictionary.
    """

    months: int
    reason: str

    def cutoff(self, today: dt.date) -> dt.date:
        """The first date kept: the same day `months` months ago (clamped to the month's end)."""
        month = today.year * 12 + today.month - 1 - self.months
        year, month = divmod(month, 12)
        last_day = calendar.monthrange(year, month + 1)[1]
        return dt.date(year, month + 1, min(today.day, last_day))

    def describe(self) -> str:
        years, months = divmod(self.months, 12)
        span = f"{years} years" if years and not months else f"{self.months} months"
        return f"{span}: {self.reason}"


# The periods the tables use (docs/DATA_DICTIONARY.md, docs/OPERATIONS.md "Tenant lifecycle").
PRODUCT_ANALYTICS = Retention(
    25, "two full years of year-over-year comparison, plus the current month"
)
DELIVERABILITY_OPERATIONS = Retention(
    13, "warmup is tuned over weeks; a year plus a month covers seasonal comparison"
)
FINANCIAL_RECORDS = Retention(84, "accounting and tax records are kept 7 years")
COMPLIANCE_RECORDS = Retention(
    84,
    "compliance record of admin actions: 7 years, like the financial records they may "
    "explain; pseudonymised, not deleted, when a tenant is erased",
)


class WriteMode(enum.StrEnum):
    """How a refresh writes a table's partitions (the value is what the UI's metadata shows)."""

    # Delete the run's partitions and write them anew.
    REPLACE = "replace"
    # Only insert rows whose grain is not there yet; never delete or update (the audit log).
    APPEND_ONLY = "append_only"


@dataclass(frozen=True)
class Rollup:
    """One OLAP table: where it lands, what it reads, and the SELECT that computes it.

    `select` receives the run's partition windows and returns a SELECT whose columns are the
    table's contract columns, in table order, restricted to rows inside those windows.

    `write_mode` is a `WriteMode`: REPLACE deletes the run's partitions and writes them anew;
    APPEND_ONLY (for the audit log) only inserts rows whose grain is not there yet, and never
    deletes or updates.

    `retention` (required) is how long partitions are kept; see `Retention`.

    `reconciliation` counts, independently of `select`, the source rows each partition of the
    windows summarises. After writing, the sum of `reconciliation.column` over each partition's
    rows must equal n (or, with `column` None, the number of rows must; in APPEND_ONLY mode it
    must be at least n, since rows are kept).
    """

    table: sa.Table
    sources: tuple[sa.Table, ...]
    select: Callable[[Windows], sa.Select[Any]]
    description: str
    group: str
    invariants: tuple[Invariant, ...] = field(default=())
    reconciliation: Reconciliation | None = None
    write_mode: WriteMode = WriteMode.REPLACE
    tracks: tuple[ChangeTracking, ...] = ()
    retention: Retention | None = None

    @property
    def name(self) -> str:
        """The table's name, which is also the asset's (see names.table_key)."""
        return self.table.name

    @property
    def output_columns(self) -> list[sa.Column[Any]]:
        """The columns the SELECT produces, in table order (the contract columns)."""
        return contract_columns(self.table)

    def __post_init__(self) -> None:
        # Catch a SELECT whose columns drift from the table at import time, not in a failed run.
        produced = [c.name for c in self.select(Windows()).selected_columns]
        expected = [c.name for c in self.output_columns]
        if produced != expected:
            raise TypeError(
                f"rollup {self.name}: SELECT yields columns {produced}, the table expects "
                f"{expected} (same names, same order)"
            )
        if self.retention is None:
            raise TypeError(f"rollup {self.name}: declare its retention (Retention(months=...))")
        if not isinstance(self.write_mode, WriteMode):
            raise TypeError(
                f"rollup {self.name}: write_mode {self.write_mode!r} is not a WriteMode; use "
                f"one of {', '.join(f'WriteMode.{m.name}' for m in WriteMode)}"
            )
        column = self.reconciliation.column if self.reconciliation is not None else None
        if column is not None and column not in expected:
            raise TypeError(
                f"rollup {self.name}: reconciliation column {column!r} is not a column of the "
                f"table (its columns: {', '.join(expected)})"
            )
