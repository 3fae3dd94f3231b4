"""billing_analytics: invoices, payments, refunds and MRR per tenant, UTC day and currency."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import count_column, key_column, money_column, olap_table
from analytics_pipeline.rollups.spec import (
    FINANCIAL_RECORDS,
    ChangeTracking,
    Invariant,
    Reconciliation,
    Rollup,
)
from analytics_pipeline.rollups.sql import ONE_DAY, Windows, utc_day, window_days
from analytics_pipeline.sources.tables import invoices, subscriptions

MEASURES = (
    "invoices_issued",
    "invoiced_cents",
    "paid_cents",
    "refunded_cents",
    "mrr_cents",
    "active_seats",
)

table = olap_table(
    "billing_analytics",
    grain=[key_column("currency", "ISO 4217 currency of the amounts in this row.", sa.CHAR(3))],
    columns=[
        count_column("invoices_issued", "Invoices issued on the day, void ones excluded."),
        money_column("invoiced_cents", "Sum of amount_cents of those invoices (minor units)."),
        money_column("paid_cents", "Sum of amount_cents of invoices paid on the day."),
        money_column(
            "refunded_cents",
            "Sum of amount_refunded_cents of invoices whose (last) refund was on the day.",
        ),
        money_column(
            "mrr_cents",
            "Monthly recurring revenue at the end of the day: sum of "
            "mrr_cents of subscriptions started before the day's end and "
            "not cancelled before it.",
        ),
        count_column("active_seats", "Seats of those same subscriptions."),
    ],
    comment="Billing per tenant, UTC day and currency: invoices issued, paid and refunded on "
    "the day, and recurring revenue and seats at the day's end.",
)

_ZERO: sa.ColumnElement[int] = sa.literal_column("0")


def _events(
    ts: sa.Column[Any],
    measure: str,
    amount: sa.ColumnElement[Any],
    w: Windows,
    *where: sa.ColumnElement[bool],
) -> sa.Select[Any]:
    """One row per invoice event on a day: its amount in `measure`, zeros elsewhere."""
    values: dict[str, sa.ColumnElement[Any]] = {m: _ZERO for m in MEASURES}
    values[measure] = amount
    if measure == "invoiced_cents":
        values["invoices_issued"] = sa.literal_column("1")
    return (
        sa.select(
            invoices.c.tenant_id,
            utc_day(ts).label("date"),
            invoices.c.currency,
            *(v.label(m) for m, v in values.items()),
        )
        .select_from(w.rows_of(invoices, ts))
        .where(*where)
    )


def _subscription_days(w: Windows) -> sa.Select[Any]:
    """Each subscription active at the end of each day of the window: its MRR and seats."""
    day = window_days(w)
    day_end = day.c.day_start + ONE_DAY
    s = subscriptions
    values = {m: _ZERO for m in MEASURES}
    values["mrr_cents"] = s.c.mrr_cents
    values["active_seats"] = s.c.seats
    return sa.select(
        s.c.tenant_id,
        utc_day(day.c.day_start).label("date"),
        s.c.currency,
        *(v.label(m) for m, v in values.items()),
    ).select_from(
        w.relation.join(day, sa.true()).join(
            s,
            sa.and_(
                s.c.tenant_id == w.c.tenant_id,
                s.c.started_at < day_end,
                sa.or_(s.c.canceled_at.is_(None), s.c.canceled_at >= day_end),
            ),
        )
    )


def select(w: Windows) -> sa.Select[Any]:
    inv = invoices
    rows = sa.union_all(
        _events(inv.c.issued_at, "invoiced_cents", inv.c.amount_cents, w, inv.c.status != "void"),
        _events(inv.c.paid_at, "paid_cents", inv.c.amount_cents, w),
        _events(inv.c.refunded_at, "refunded_cents", inv.c.amount_refunded_cents, w),
        _subscription_days(w),
    ).subquery("events")
    sums = [sa.cast(sa.func.sum(rows.c[m]), sa.BigInteger).label(m) for m in MEASURES]
    return (
        sa.select(rows.c.tenant_id, rows.c.date, rows.c.currency, *sums)
        .group_by(rows.c.tenant_id, rows.c.date, rows.c.currency)
        # The contract: a row only when one of the six measures is non-zero.
        .having(sa.or_(*(sa.func.sum(rows.c[m]) != 0 for m in MEASURES)))
    )


BILLING_ANALYTICS = Rollup(
    table=table,
    sources=(invoices, subscriptions),
    select=select,
    group="billing",
    description=(
        "Daily billing per currency: invoices issued (void ones excluded) and their amount, "
        "payments and refunds received on each UTC day, and the recurring revenue (MRR) and "
        "seats of the subscriptions active at the day's end. Amounts are integer minor units "
        "(cents) in the row's currency; never add up rows of different currencies."
    ),
    invariants=(
        Invariant(
            "amounts_non_negative",
            lambda t: sa.and_(*(t.c[m] >= 0 for m in MEASURES)),
            "all six measures >= 0",
        ),
        Invariant(
            "row_not_empty",
            lambda t: sa.or_(*(t.c[m] != 0 for m in MEASURES)),
            "a row exists only when one of the six measures is non-zero",
        ),
    ),
    reconciliation=Reconciliation(
        invoices,
        "issued_at",
        where=lambda inv: inv.c.status != "void",
        column="invoices_issued",
    ),
    tracks=(
        ChangeTracking(invoices, day_of=("issued_at", "paid_at", "refunded_at")),
        # A subscription's MRR counts on every day it is active: a change touches them all.
        ChangeTracking(subscriptions, span=("started_at", "canceled_at")),
    ),
    retention=FINANCIAL_RECORDS,
)
