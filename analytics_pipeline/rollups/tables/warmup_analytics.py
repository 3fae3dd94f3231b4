"""warmup_analytics: inbox placement of warmup traffic per tenant, UTC day of sent_at, mailbox."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import count_column, key_column, olap_table, ratio_column
from analytics_pipeline.rollups.spec import (
    DELIVERABILITY_OPERATIONS,
    ChangeTracking,
    Invariant,
    Reconciliation,
    Rollup,
)
from analytics_pipeline.rollups.sql import Windows, count_all, count_where, utc_day
from analytics_pipeline.sources.tables import warmup_emails

W = warmup_emails
PLACEMENTS = ("inbox", "spam", "promotions", "missing")

table = olap_table(
    "warmup_analytics",
    grain=[key_column("mailbox_id", "The warming-up mailbox that sent the warmup email.")],
    columns=[
        count_column("warmup_sent", "Warmup emails sent on the day."),
        *(
            count_column(f"landed_{p}", f"Of those, known to have landed in {p}.")
            for p in PLACEMENTS
        ),
        count_column("pending", "Of those, placement not known yet (landed_in NULL)."),
        ratio_column(
            "inbox_rate",
            "landed_inbox / (warmup_sent - pending): the inbox share of "
            "the placed emails; NULL when none is placed yet.",
        ),
        count_column("replied", "Of those, warmup emails that got a reply."),
        count_column("rescued_from_spam", "Of those, moved from spam to the inbox."),
    ],
    comment="Warmup inbox placement per tenant, UTC day of sent_at and mailbox.",
)


def select(w: Windows) -> sa.Select[Any]:
    day = utc_day(W.c.sent_at)
    placed = sa.func.count() - sa.func.count().filter(W.c.landed_in.is_(None))
    inbox = sa.func.count().filter(W.c.landed_in == "inbox")
    return (
        sa.select(
            W.c.tenant_id,
            day.label("date"),
            W.c.mailbox_id,
            count_all("warmup_sent"),
            *(count_where(W.c.landed_in == p, f"landed_{p}") for p in PLACEMENTS),
            count_where(W.c.landed_in.is_(None), "pending"),
            (sa.cast(inbox, sa.Numeric) / sa.func.nullif(placed, 0)).label("inbox_rate"),
            count_where(W.c.replied.is_not(None), "replied"),
            count_where(W.c.rescued_from_spam.is_not(None), "rescued_from_spam"),
        )
        .select_from(w.rows_of(W, W.c.sent_at))
        .group_by(W.c.tenant_id, day, W.c.mailbox_id)
    )


WARMUP_ANALYTICS = Rollup(
    table=table,
    sources=(warmup_emails,),
    select=select,
    group="deliverability",
    description=(
        "Daily warmup placement per mailbox: of the warmup emails a mailbox sent on a UTC day, "
        "how many landed in the inbox, spam, promotions or went missing, how many are still "
        "pending, the inbox rate of the placed ones, replies, and rescues from spam. Placement "
        "arrives after the send, so recent days fill in over the following hours."
    ),
    invariants=(
        Invariant(
            "placements_add_up",
            lambda t: (
                t.c.landed_inbox
                + t.c.landed_spam
                + t.c.landed_promotions
                + t.c.landed_missing
                + t.c.pending
                == t.c.warmup_sent
            ),
            "landed_inbox + landed_spam + landed_promotions + landed_missing + pending "
            "= warmup_sent",
        ),
        Invariant(
            "inbox_rate_in_range",
            lambda t: sa.or_(
                sa.and_(t.c.warmup_sent == t.c.pending, t.c.inbox_rate.is_(None)),
                sa.and_(t.c.warmup_sent > t.c.pending, t.c.inbox_rate.between(0, 1)),
            ),
            "inbox_rate in 0..1, and NULL exactly when nothing is placed",
        ),
        Invariant(
            "replied_le_sent", lambda t: t.c.replied <= t.c.warmup_sent, "replied <= warmup_sent"
        ),
        Invariant(
            "rescued_le_sent",
            lambda t: t.c.rescued_from_spam <= t.c.warmup_sent,
            "rescued_from_spam <= warmup_sent",
        ),
    ),
    reconciliation=Reconciliation(warmup_emails, "sent_at", indexed=True, column="warmup_sent"),
    tracks=(ChangeTracking(warmup_emails, day_of=("sent_at",)),),
    retention=DELIVERABILITY_OPERATIONS,
)
