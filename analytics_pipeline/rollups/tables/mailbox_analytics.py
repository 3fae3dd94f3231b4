"""mailbox_analytics: sending volume and outcomes per tenant, UTC day of sent_at, and mailbox."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import count_column, key_column, olap_table, ratio_column
from analytics_pipeline.rollups.spec import PRODUCT_ANALYTICS, Invariant, Rollup
from analytics_pipeline.rollups.sql import Windows, count_all, count_where, utc_day
from analytics_pipeline.rollups.tables.campaign_analytics import EMAILS_BY_SENT_DAY, EMAILS_SENT
from analytics_pipeline.sources.tables import emails, mailboxes

table = olap_table(
    "mailbox_analytics",
    grain=[key_column("mailbox_id", "The sending mailbox.")],
    columns=[
        count_column("sent", "Emails the mailbox sent on the day (queued emails never count)."),
        count_column("delivered", "Of those, emails with status 'delivered'."),
        count_column("replied", "Of those, emails that got a reply."),
        count_column("spam_complaints", "Of those, emails reported as spam."),
        count_column("hard_bounced", "Of those, emails that bounced hard (bounce_type 'hard')."),
        count_column("soft_bounced", "Of those, emails that bounced soft (bounce_type 'soft')."),
        sa.Column(
            "daily_limit",
            sa.Integer,
            nullable=True,
            comment="The mailbox's daily sending limit: its current value when the "
            "partition was refreshed, not the value on that day.",
        ),
        ratio_column(
            "limit_utilization",
            "sent / daily_limit; NULL when daily_limit is 0. Above 1 when the mailbox "
            "sent more than its (current) limit.",
        ),
    ],
    comment="Sending volume and outcomes per tenant, UTC day of sent_at and mailbox.",
)


def select(w: Windows) -> sa.Select[Any]:
    e = emails
    day = utc_day(e.c.sent_at)
    sent = sa.func.count()
    # LEFT JOIN keeps an email whose mailbox row is missing (daily_limit then NULL).
    source = w.rows_of(e, e.c.sent_at).outerjoin(mailboxes, mailboxes.c.id == e.c.mailbox_id)
    return (
        sa.select(
            e.c.tenant_id,
            day.label("date"),
            e.c.mailbox_id,
            count_all("sent"),
            count_where(e.c.status == "delivered", "delivered"),
            count_where(e.c.replied.is_not(None), "replied"),
            count_where(e.c.complaint.is_not(None), "spam_complaints"),
            count_where(e.c.bounce_type == "hard", "hard_bounced"),
            count_where(e.c.bounce_type == "soft", "soft_bounced"),
            mailboxes.c.daily_limit,
            (sa.cast(sent, sa.Numeric) / sa.func.nullif(mailboxes.c.daily_limit, 0)).label(
                "limit_utilization"
            ),
        )
        .select_from(source)
        .group_by(e.c.tenant_id, day, e.c.mailbox_id, mailboxes.c.daily_limit)
    )


def _at_most_sent(col: str) -> Invariant:
    return Invariant(f"{col}_le_sent", lambda t: t.c[col] <= t.c.sent, f"{col} <= sent")


MAILBOX_ANALYTICS = Rollup(
    table=table,
    sources=(emails, mailboxes),
    select=select,
    group="deliverability",
    description=(
        "Daily sending volume and deliverability per mailbox: emails sent on a UTC day, "
        "delivered, replied, spam complaints, hard and soft bounces, and how much of the "
        "mailbox's daily limit was used. Use it to spot mailboxes that bounce, get "
        "complaints, or run over their limit."
    ),
    invariants=(
        *(_at_most_sent(c) for c in ("delivered", "replied", "spam_complaints")),
        Invariant(
            "bounces_le_sent",
            lambda t: t.c.hard_bounced + t.c.soft_bounced <= t.c.sent,
            "hard_bounced + soft_bounced <= sent",
        ),
        Invariant(
            "counts_non_negative",
            lambda t: sa.and_(
                *(
                    t.c[c] >= 0
                    for c in (
                        "sent",
                        "delivered",
                        "replied",
                        "spam_complaints",
                        "hard_bounced",
                        "soft_bounced",
                    )
                )
            ),
            "counts >= 0",
        ),
        Invariant(
            "utilization_defined",
            lambda t: sa.or_(
                sa.and_(t.c.daily_limit == 0, t.c.limit_utilization.is_(None)),
                sa.and_(t.c.daily_limit > 0, t.c.limit_utilization >= 0),
                t.c.daily_limit.is_(None),
            ),
            "limit_utilization >= 0, and NULL exactly when daily_limit is 0",
        ),
    ),
    reconciliation=EMAILS_SENT,
    tracks=(EMAILS_BY_SENT_DAY,),
    retention=PRODUCT_ANALYTICS,
)
