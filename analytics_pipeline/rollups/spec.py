"""The declarative definition of one OLAP table."""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from analytics_pipeline.rollups.sql import Windows
from analytics_pipeline.warehouse.metadata import contract_columns


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
    """

    source: sa.Table
    timestamp: str
    indexed: bool = False
    where: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None


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


REPLACE = "replace"
APPEND_ONLY = "append_only"


@dataclass(frozen=True)
class Rollup:
    """One OLAP table: where it lands, what it reads, and the SELECT that computes it.

    `select` receives the run's partition windows and returns a SELECT whose columns are the
    table's contract columns, in table order, restricted to rows inside those windows.

    `write_mode` REPLACE deletes the run's partitions and writes them anew; APPEND_ONLY (for the
    audit log) only inserts rows whose grain is not there yet, and never deletes or updates.

    `retention` (required) is how long partitions are kept; see `Retention`.

    `reconciliation` counts, independently of `select`, the source rows each partition of the
    windows summarises. After writing, the sum of `reconciled_column`
    over each partition's rows must equal n (or, with `reconciled_column` None, the number of
    rows must; in APPEND_ONLY mode it must be at least n, since rows are kept).
    """

    table: sa.Table
    sources: tuple[sa.Table, ...]
    select: Callable[[Windows], sa.Select]
    description: str
    group: str
    invariants: tuple[Invariant, ...] = field(default=())
    reconciliation: Reconciliation | None = None
    reconciled_column: str | None = None
    write_mode: str = REPLACE
    tracks: tuple[ChangeTracking, ...] = ()
    retention: Retention | None = None

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def output_columns(self) -> list[sa.Column]:
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
        if self.write_mode not in (REPLACE, APPEND_ONLY):
            raise TypeError(f"rollup {self.name}: unknown write_mode {self.write_mode!r}")
        if self.reconciled_column is not None and self.reconciled_column not in expected:
            raise TypeError(
                f"rollup {self.name}: reconciled_column {self.reconciled_column!r} is not a "
                "column of the table"
            )
