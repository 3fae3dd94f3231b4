"""SQL building blocks shared by every rollup's SELECT.

A run's partitions arrive as *windows*: per tenant, a run of consecutive UTC days. They are bound
as five arrays and unnested into a relation, so one statement serves one partition or thousands,
and a source table is probed with one index range scan per window, on the raw timestamp column
(`sent_at >= starts_at AND sent_at < ends_at`), never on an expression such as DATE(sent_at) that
would hide the index.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.base import ReadOnlyColumnCollection
from sqlalchemy.sql.elements import KeyedColumnElement

from analytics_pipeline.partitions import TenantWindow

_TS = sa.TIMESTAMP(timezone=True)
_WINDOW_ARRAYS: dict[str, type[sa.types.TypeEngine[Any]] | sa.types.TypeEngine[Any]] = {
    "w_tenant_id": sa.Text,
    "w_first_day": sa.Date,
    "w_end_day": sa.Date,
    "w_starts_at": _TS,
    "w_ends_at": _TS,
}


class Windows:
    """The run's windows as a relation `w(tenant_id, first_day, end_day, starts_at, ends_at)`.

    Each rollup SELECT joins its source to `self.relation` and keeps rows inside a window.
    """

    def __init__(self, alias: str = "w") -> None:
        fn = sa.func.unnest(
            *(sa.bindparam(name, type_=ARRAY(t)) for name, t in _WINDOW_ARRAYS.items())
        )
        self.relation = fn.table_valued(
            sa.column("tenant_id", sa.Text),
            sa.column("first_day", sa.Date),
            sa.column("end_day", sa.Date),
            sa.column("starts_at", _TS),
            sa.column("ends_at", _TS),
        ).render_derived(name=alias)

    @property
    def c(self) -> ReadOnlyColumnCollection[str, KeyedColumnElement[Any]]:
        """The relation's columns: tenant_id, first_day, end_day, starts_at, ends_at."""
        return self.relation.c

    def contains(
        self, tenant_col: sa.ColumnElement[Any], ts_col: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[bool]:
        """`ts_col` (a timestamptz) falls on one of the window's days, for the window's tenant."""
        return sa.and_(
            tenant_col == self.c.tenant_id,
            ts_col >= self.c.starts_at,
            ts_col < self.c.ends_at,
        )

    def rows_of(self, table: sa.Table, timestamp: sa.ColumnElement[Any]) -> sa.Join:
        """`table` joined to the windows: its rows whose `timestamp` falls in one of them."""
        return table.join(self.relation, self.contains(table.c.tenant_id, timestamp))

    def contains_day(
        self, tenant_col: sa.ColumnElement[Any], date_col: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[bool]:
        """`date_col` (a date) is one of the window's days, for the window's tenant."""
        return sa.and_(
            tenant_col == self.c.tenant_id,
            date_col >= self.c.first_day,
            date_col < self.c.end_day,
        )


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def window_params(windows: Sequence[TenantWindow]) -> dict[str, list[Any]]:
    """The bound values for `Windows`: five parallel arrays, one element per window."""
    return {
        "w_tenant_id": [w.tenant_id for w in windows],
        "w_first_day": [w.first_day for w in windows],
        "w_end_day": [w.end_day for w in windows],
        "w_starts_at": [_utc_midnight(w.first_day) for w in windows],
        "w_ends_at": [_utc_midnight(w.end_day) for w in windows],
    }


def utc_day(ts: sa.ColumnElement[Any]) -> sa.ColumnElement[dt.date]:
    """The UTC date of a timestamptz, whatever the session's time zone."""
    # A literal, not a bound parameter: the same expression must appear in SELECT and GROUP BY,
    # and two parameters ($1, $2) would make them different expressions to PostgreSQL.
    return sa.cast(sa.func.timezone(sa.literal_column("'UTC'"), ts), sa.Date)


def count_all(name: str) -> sa.Label[int]:
    """count(*) AS name."""
    return sa.func.count().label(name)


def count_where(condition: sa.ColumnElement[bool], name: str) -> sa.Label[int]:
    """count(*) FILTER (WHERE condition) AS name."""
    return sa.func.count().filter(condition).label(name)


# A literal, not a bound parameter: it appears in several expressions that must stay equal.
ONE_DAY = sa.text("interval '1 day'")


def window_days(w: Windows, alias: str = "d") -> sa.TableValuedAlias:
    """Each day of each window, as a relation `d(day_start)` (the UTC midnight it starts at).

    Join it to `w.relation` (ON true) to get one row per (window, day).
    """
    return (
        sa.func.generate_series(w.c.starts_at, w.c.ends_at - ONE_DAY, ONE_DAY)
        .table_valued(sa.column("day_start", _TS))
        .render_derived(name=alias)
    )


def source_counts(
    w: Windows,
    source: sa.Table,
    timestamp: str,
    *,
    indexed: bool,
    where: Callable[[sa.Table], sa.ColumnElement[bool]] | None = None,
) -> sa.Select[Any]:
    """`(tenant_id, date, n)`: rows of `source` per (tenant, UTC day) of the windows.

    With `indexed`, each day is counted by its own probe of the (tenant_id, timestamp) index
    (an index-only scan when the table is vacuumed): no row is fetched or grouped.
    """
    ts = source.c[timestamp]
    if not indexed:
        day = utc_day(ts)
        query = (
            sa.select(source.c.tenant_id, day.label("date"), sa.func.count().label("n"))
            .select_from(w.rows_of(source, ts))
            .group_by(source.c.tenant_id, day)
        )
        return query.where(where(source)) if where is not None else query
    days = window_days(w)
    probe = sa.select(sa.func.count()).where(
        source.c.tenant_id == w.c.tenant_id, ts >= days.c.day_start, ts < days.c.day_start + ONE_DAY
    )
    if where is not None:
        probe = probe.where(where(source))
    n = probe.scalar_subquery().label("n")
    return sa.select(w.c.tenant_id, utc_day(days.c.day_start).label("date"), n).select_from(
        w.relation.join(days, sa.true())
    )
