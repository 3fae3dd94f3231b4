"""lead_analytics: funnel milestones per tenant, UTC day and campaign, each by its own timestamp."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY

from analytics_pipeline.rollups.schema import count_column, key_column, olap_table
from analytics_pipeline.rollups.spec import (
    PRODUCT_ANALYTICS,
    ChangeTracking,
    Invariant,
    Reconciliation,
    Rollup,
)
from analytics_pipeline.rollups.sql import Windows, count_where, utc_day
from analytics_pipeline.sources.tables import leads

# (output column, the lead timestamp it counts, description)
MILESTONES = (
    ("leads_created", leads.c.created_at, "Leads created on the day."),
    ("leads_contacted", leads.c.first_contacted_at, "Leads first contacted on the day."),
    ("leads_replied", leads.c.first_replied_at, "Leads whose first reply came on the day."),
    ("leads_converted", leads.c.converted_at, "Leads converted on the day."),
    ("leads_unsubscribed", leads.c.unsubscribed_at, "Leads who unsubscribed on the day."),
)

table = olap_table(
    "lead_analytics",
    grain=[key_column("campaign_id", "The lead's campaign; NULL for leads in no campaign.")],
    columns=[count_column(name, doc) for name, _, doc in MILESTONES],
    comment="Lead funnel milestones per tenant, UTC day and campaign; each milestone is counted "
    "on the day of its own timestamp.",
)


def milestones_relation() -> sa.TableValuedAlias:
    """One row per (lead, milestone that happened): `ev(milestone, at)`, lateral to leads."""
    return (
        sa.func.unnest(
            sa.literal([name for name, _, _ in MILESTONES], ARRAY(sa.Text)),
            postgresql.array([ts for _, ts, _ in MILESTONES]),
        )
        .table_valued(sa.column("milestone", sa.Text), sa.column("at", sa.TIMESTAMP(True)))
        .render_derived(name="ev")
    )


def select(w: Windows) -> sa.Select[Any]:
    ev = milestones_relation()
    day = utc_day(ev.c.at)
    # A function in FROM may refer to earlier FROM items (implicit LATERAL): each lead fans out
    # into its milestones, and each milestone lands on its own day.
    source = leads.join(ev, sa.true()).join(w.relation, w.contains(leads.c.tenant_id, ev.c.at))
    return (
        sa.select(
            leads.c.tenant_id,
            day.label("date"),
            leads.c.campaign_id,
            *(count_where(ev.c.milestone == name, name) for name, _, _ in MILESTONES),
        )
        .select_from(source)
        .group_by(leads.c.tenant_id, day, leads.c.campaign_id)
    )


LEAD_ANALYTICS = Rollup(
    table=table,
    sources=(leads,),
    select=select,
    group="leads",
    description=(
        "Daily lead funnel per campaign: how many leads were created, first contacted, first "
        "replied, converted and unsubscribed on each UTC day. Each milestone counts on the day "
        "of its own timestamp, so one lead adds to several days as it moves through the funnel."
    ),
    invariants=(
        Invariant(
            "counts_non_negative",
            lambda t: sa.and_(*(t.c[n] >= 0 for n, _, _ in MILESTONES)),
            "counts >= 0",
        ),
        Invariant(
            "row_not_empty",
            lambda t: sa.or_(*(t.c[n] > 0 for n, _, _ in MILESTONES)),
            "a row exists only when some milestone happened that day",
        ),
    ),
    # The product has no index on leads.created_at: the leads are grouped by day instead.
    reconciliation=Reconciliation(leads, "created_at", column="leads_created"),
    tracks=(ChangeTracking(leads, day_of=tuple(ts.name for _, ts, _ in MILESTONES)),),
    retention=PRODUCT_ANALYTICS,
)
