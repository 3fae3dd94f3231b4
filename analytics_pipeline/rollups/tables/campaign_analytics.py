"""campaign_analytics: email outcomes per tenant, UTC day of sent_at, and campaign."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import count_column, key_column, olap_table
from analytics_pipeline.rollups.spec import (
    PRODUCT_ANALYTICS,
    ChangeTracking,
    Invariant,
    Reconciliation,
    Rollup,
)
from analytics_pipeline.rollups.sql import Windows, count_all, count_where, utc_day
from analytics_pipeline.sources.tables import emails

# The eight outcome counts of an email set, shared with sequence_step_analytics.
EMAIL_OUTCOMES = (
    ("sent", "Emails sent on the day (sent_at on that UTC day; queued emails never count).", None),
    ("delivered", "Of those, emails with status 'delivered'.", emails.c.status == "delivered"),
    (
        "opened_tracked",
        "Of those, emails with a tracked open (at any time since).",
        emails.c.opened.is_not(None),
    ),
    ("clicked_tracked", "Of those, emails with a tracked click.", emails.c.clicked.is_not(None)),
    ("replied", "Of those, emails that got a reply.", emails.c.replied.is_not(None)),
    ("bounced", "Of those, emails that bounced (hard or soft).", emails.c.bounce_type.is_not(None)),
    (
        "unsubscribed",
        "Of those, emails whose recipient unsubscribed.",
        emails.c.unsubscribed.is_not(None),
    ),
    ("spam_complaints", "Of those, emails reported as spam.", emails.c.complaint.is_not(None)),
)


def email_outcome_columns() -> list[sa.Column[Any]]:
    """The outcome count columns, as the campaign and step tables both declare them."""
    return [count_column(name, doc) for name, doc, _ in EMAIL_OUTCOMES]


def email_outcome_counts() -> list[sa.Label[int]]:
    """The outcome counts, in column order, over the emails of a group."""
    return [
        count_all(name) if cond is None else count_where(cond, name)
        for name, _, cond in EMAIL_OUTCOMES
    ]


def _at_most_sent(name: str) -> Callable[[sa.Table], sa.ColumnElement[bool]]:
    return lambda t: t.c[name] <= t.c.sent


# Every outcome counts a subset of the emails sent: none can exceed `sent`, none is negative.
EMAIL_OUTCOME_INVARIANTS = (
    Invariant(
        "counts_non_negative",
        lambda t: sa.and_(*(t.c[name] >= 0 for name, _, _ in EMAIL_OUTCOMES)),
        "every count >= 0",
    ),
    *(
        Invariant(f"{name}_le_sent", _at_most_sent(name), f"{name} <= sent")
        for name, _, cond in EMAIL_OUTCOMES
        if cond is not None
    ),
)


# Sent emails per (tenant, day), counted apart from any rollup's grouping and joins, with one
# probe per day of the product's (tenant_id, sent_at) index; the campaign, step and mailbox
# tables each sum them in their `sent` column.
EMAILS_SENT = Reconciliation(emails, "sent_at", indexed=True, column="sent")


# Late opens, replies, bounces and status changes touch updated_at and change the sent day.
EMAILS_BY_SENT_DAY = ChangeTracking(emails, day_of=("sent_at",))


table = olap_table(
    "campaign_analytics",
    grain=[key_column("campaign_id", "Campaign; NULL groups the tenant's one-off emails.")],
    columns=email_outcome_columns(),
    comment="Email outcomes per tenant, UTC day of sent_at and campaign.",
)


def select(w: Windows) -> sa.Select[Any]:
    day = utc_day(emails.c.sent_at)
    return (
        sa.select(
            emails.c.tenant_id, day.label("date"), emails.c.campaign_id, *email_outcome_counts()
        )
        .select_from(w.rows_of(emails, emails.c.sent_at))
        .group_by(emails.c.tenant_id, day, emails.c.campaign_id)
    )


CAMPAIGN_ANALYTICS = Rollup(
    table=table,
    sources=(emails,),
    select=select,
    group="campaigns",
    description=(
        "Daily email outcomes per campaign: how many emails each campaign sent on a UTC day "
        "and how many of those were delivered, opened, clicked, replied to, bounced, "
        "unsubscribed or reported as spam. Engagement counts grow after the day as late "
        "opens and replies arrive; the late-data refresh re-computes those days."
    ),
    invariants=EMAIL_OUTCOME_INVARIANTS,
    reconciliation=EMAILS_SENT,
    tracks=(EMAILS_BY_SENT_DAY,),
    retention=PRODUCT_ANALYTICS,
)
