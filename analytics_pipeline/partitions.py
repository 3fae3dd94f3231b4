"""The (tenant, date) partitions every OLAP asset shares.

Tenants are a dynamic dimension stored in the Dagster instance; dates are UTC days. Dagster joins
multi-partition keys with `|` and accepts a dynamic key holding one silently, which corrupts every
key built from it; the default filesystem IO manager also fails on empty or long keys. So tenant
ids pass `validate_tenant_id` before they become partitions, and nothing else adds them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg

from analytics_pipeline.errors import ConfigurationError, InvalidPartitionKeyError
from analytics_pipeline.history import DEFAULT_START_DATE, START_DATE_ENV, partitions_start

TENANT_DIMENSION = "tenant"
DATE_DIMENSION = "date"
TENANTS_PARTITIONS_NAME = "tenants"
# The most partitions one run covers, in every path that runs many (`analytics-pipeline backfill`,
# backfills from the UI): 500 tenants x 100 days. A run holds its partition keys, planned events
# and per-partition figures in memory at once, and shows progress in the UI only run by run.
MAX_PARTITIONS_PER_RUN = 50_000

# Letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters: safe in
# Dagster keys, URLs, file names and log lines alike.
TENANT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


# What to do about an id that cannot be a key depends on where it came from: each caller says.
FIX_IN_OLTP = "Rename the tenant in OLTP or map it to a valid key; it was not added."
FIX_CLI_FILTER = "Check the id given to --tenants; nothing was added or run."
FIX_PARTITION_KEY = (
    "The run's partition key was typed or built outside the pipeline: launch it again with a "
    "registered tenant's key."
)


def validate_tenant_id(tenant_id: object, *, fix: str = FIX_IN_OLTP) -> str:
    """Return `tenant_id` if it can be a partition key, else raise naming the value and the rule.

    `fix` ends the message: what the reader can do where the id came from (FIX_*).
    """
    if not isinstance(tenant_id, str) or not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise InvalidPartitionKeyError(
            f"tenant id {tenant_id!r} cannot be a partition key: it must match "
            f"{TENANT_ID_PATTERN.pattern} (1-64 letters, digits, '_' or '-', starting with a "
            f"letter or digit). {fix}"
        )
    return tenant_id


def check_days_in_partitions(first_day: dt.date, last_day: dt.date, *, what: str) -> None:
    """Refuse a day range that has no date partitions, naming the bounds (instead of Dagster's
    CheckError from deep inside a run). `what` says where the days came from (an option)."""
    start = partitions_start()
    # end_offset=1 below: the last partition is today (UTC).
    today = dt.datetime.now(dt.UTC).date()
    if first_day < start:
        raise ConfigurationError(
            f"{what} starts on {first_day}, before the first partition {start} "
            f"({START_DATE_ENV} or the recorded start, docs/OPERATIONS.md): pick a later day, "
            f"or set {START_DATE_ENV} earlier"
        )
    if last_day > today:
        raise ConfigurationError(
            f"{what} ends on {last_day}, after the last partition {today} (today, UTC)"
        )


def split_tenant_ids(tenant_ids: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """The ids that can be partition keys, and the others with the reason each was refused."""
    valid: list[str] = []
    invalid: dict[str, str] = {}
    for tenant_id in tenant_ids:
        try:
            valid.append(validate_tenant_id(tenant_id))
        except InvalidPartitionKeyError as exc:
            invalid[tenant_id] = str(exc)
    return valid, invalid


tenant_partitions = dg.DynamicPartitionsDefinition(name=TENANTS_PARTITIONS_NAME)
# Registered tenants that OLTP marks offboarded: kept readable, never refreshed. Kept by the
# tenant sensor in the instance (no asset uses it), so schedules need no OLTP query to know.
OFFBOARDED_PARTITIONS_NAME = "offboarded_tenants"
offboarded_tenants = dg.DynamicPartitionsDefinition(name=OFFBOARDED_PARTITIONS_NAME)


def daily_partitions(start: dt.date) -> dg.DailyPartitionsDefinition:
    """UTC days from `start` (where the data starts: analytics_pipeline/history.py) to today.

    end_offset=1 makes today's partition exist, so the current day can be refreshed during it.
    """
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone="UTC", end_offset=1)


def tenant_daily_partitions(start: dt.date | None = None) -> dg.MultiPartitionsDefinition:
    """The (tenant, date) partitions, dates from `start` (None: the start in force now).

    A function, not a module constant: the start is resolved when the Definitions are built
    (history.partitions_start), never when this module is imported.
    """
    return dg.MultiPartitionsDefinition(
        {
            TENANT_DIMENSION: tenant_partitions,
            DATE_DIMENSION: daily_partitions(start or partitions_start()),
        }
    )


# The shape of a (tenant, date) key (Dagster orders the dimensions by name), whatever day the
# dates start on: for splitting keys, never for listing partitions.
KEY_SHAPE = tenant_daily_partitions(DEFAULT_START_DATE)


@dataclass(frozen=True, order=True)
class TenantDay:
    """One (tenant, UTC date) partition."""

    tenant_id: str
    day: dt.date

    def partition_key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey(
            {TENANT_DIMENSION: self.tenant_id, DATE_DIMENSION: self.day.isoformat()}
        )


def parse_partition_key(key: str | dg.MultiPartitionKey) -> TenantDay:
    """Turn one Dagster multi-partition key into a `TenantDay`, validating it again: a run may
    be launched with a hand-typed key."""
    dims = (
        key.keys_by_dimension
        if isinstance(key, dg.MultiPartitionKey)
        else KEY_SHAPE.get_partition_key_from_str(key).keys_by_dimension
    )
    tenant = validate_tenant_id(dims[TENANT_DIMENSION], fix=FIX_PARTITION_KEY)
    try:
        day = dt.date.fromisoformat(dims[DATE_DIMENSION])
    except ValueError:
        raise InvalidPartitionKeyError(
            f"partition key {str(key)!r} has date {dims[DATE_DIMENSION]!r}, not YYYY-MM-DD"
        ) from None
    return TenantDay(tenant, day)


def parse_partition_keys(keys: Iterable[str | dg.MultiPartitionKey]) -> list[TenantDay]:
    """Turn Dagster multi-partition keys into sorted, de-duplicated `TenantDay`s."""
    return sorted({parse_partition_key(key) for key in keys})


@dataclass(frozen=True)
class TenantWindow:
    """A run of consecutive days of one tenant: [first_day, end_day)."""

    tenant_id: str
    first_day: dt.date
    end_day: dt.date

    @property
    def days(self) -> int:
        return (self.end_day - self.first_day).days

    @property
    def last_day(self) -> dt.date:
        return self.end_day - dt.timedelta(days=1)

    def label(self) -> str:
        """For messages, inclusive: "t1 2026-11-01" (one day) or "t1 2026-11-01..2026-11-30"."""
        days = self.first_day.isoformat()
        if self.days > 1:
            days += f"..{self.last_day.isoformat()}"
        return f"{self.tenant_id} {days}"


def consecutive_spans(values: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct integers (day ordinals, tenant positions) cut into maximal runs of consecutive
    ones, in order, as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for value in sorted(values):
        if out and out[-1][1] == value - 1:
            out[-1] = (out[-1][0], value)
        else:
            out.append((value, value))
    return out


def to_windows(partitions: Sequence[TenantDay]) -> list[TenantWindow]:
    """Collapse partitions into the fewest per-tenant runs of consecutive days.

    A rectangle of tenants x days becomes one window per tenant, so SQL over a whole backfill is a
    handful of index range scans instead of one probe per partition.
    """
    windows: list[TenantWindow] = []
    for p in sorted(set(partitions)):
        last = windows[-1] if windows else None
        if last and last.tenant_id == p.tenant_id and last.end_day == p.day:
            windows[-1] = TenantWindow(p.tenant_id, last.first_day, p.day + dt.timedelta(days=1))
        else:
            windows.append(TenantWindow(p.tenant_id, p.day, p.day + dt.timedelta(days=1)))
    return windows


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: TenantDay, last: TenantDay) -> dict[str, str]:
    """Run tags for one run over the rectangle from `first` to `last` (tenant order as added)."""
    return {
        RANGE_START_TAG: str(first.partition_key()),
        RANGE_END_TAG: str(last.partition_key()),
    }


def add_tenants(
    instance: dg.DagsterInstance, tenant_ids: Iterable[str], *, fix: str = FIX_IN_OLTP
) -> list[str]:
    """Register tenant partitions, refusing the whole batch if any id is invalid.

    Returns the ids that were new. Validation happens before anything is written, so a bad id
    never leaves a half-added batch behind. `fix` is as for `validate_tenant_id`.
    """
    ids = [validate_tenant_id(t, fix=fix) for t in tenant_ids]
    existing = set(instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME))
    new = [t for t in dict.fromkeys(ids) if t not in existing]
    if new:
        instance.add_dynamic_partitions(TENANTS_PARTITIONS_NAME, new)
    return new
