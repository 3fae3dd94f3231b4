"""sequence_step_analytics: email outcomes per tenant, UTC day of sent_at, campaign and step."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from analytics_pipeline.rollups.schema import key_column, olap_table
from analytics_pipeline.rollups.spec import PRODUCT_ANALYTICS, Rollup
from analytics_pipeline.rollups.sql import Windows, utc_day
from analytics_pipeline.rollups.tables.campaign_analytics import (
    EMAIL_OUTCOME_INVARIANTS,
    EMAILS_BY_SENT_DAY,
    EMAILS_SENT,
    email_outcome_columns,
    email_outcome_counts,
)
from analytics_pipeline.sources.tables import emails, sequence_steps

table = olap_table(
    "sequence_step_analytics",
    grain=[
        key_column("campaign_id", "Campaign; NULL groups the tenant's one-off emails."),
        key_column("sequence_step_id", "Sequence step; NULL for emails outside a sequence."),
    ],
    columns=[
        sa.Column(
            "step_number",
            sa.Integer,
            nullable=True,
            comment="The step's position in its sequence (1 = first email); NULL when "
            "sequence_step_id is NULL.",
        ),
        *email_outcome_columns(),
    ],
    comment="Email outcomes per tenant, UTC day of sent_at, campaign and sequence step.",
)


def select(w: Windows) -> sa.Select[Any]:
    day = utc_day(emails.c.sent_at)
    # LEFT JOIN: an email without a step (or whose step row is missing) still counts, with
    # step_number NULL; an inner join would silently drop it.
    source = w.rows_of(emails, emails.c.sent_at).outerjoin(
        sequence_steps, sequence_steps.c.id == emails.c.sequence_step_id
    )
    return (
        sa.select(
            emails.c.tenant_id,
            day.label("date"),
            emails.c.campaign_id,
            emails.c.sequence_step_id,
            sequence_steps.c.step_number,
            *email_outcome_counts(),
        )
        .select_from(source)
        .group_by(
            emails.c.tenant_id,
            day,
            emails.c.campaign_id,
            emails.c.sequence_step_id,
            sequence_steps.c.step_number,
        )
    )


SEQUENCE_STEP_ANALYTICS = Rollup(
    table=table,
    sources=(emails, sequence_steps),
    select=select,
    group="campaigns",
    description=(
        "Daily email outcomes per sequence step: for each campaign step (first email, "
        "follow-up 1, ...), the emails sent on a UTC day and how many of them were delivered, "
        "opened, clicked, replied to, bounced, unsubscribed or reported as spam. Shows where "
        "in a sequence prospects engage or drop off."
    ),
    invariants=EMAIL_OUTCOME_INVARIANTS,
    reconciliation=EMAILS_SENT,
    tracks=(EMAILS_BY_SENT_DAY,),
    retention=PRODUCT_ANALYTICS,
)
