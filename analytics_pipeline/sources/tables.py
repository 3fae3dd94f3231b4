"""SQLAlchemy Core mirror of the OLTP tables the pipeline reads.

The source of truth is the product's schema (`analytics_pipeline/contract/oltp_schema.sql`, a copy
of the shared contract). This mirror carries only what queries need (names and types, no
constraints): it is never used to create or alter the product's tables. A test compares it with a
database created from the contract file, so a drift is caught there and not in production.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INET, JSONB

metadata = sa.MetaData()

TS = sa.TIMESTAMP(timezone=True)


def _table(name: str, *columns: sa.Column[Any], description: str) -> sa.Table:
    return sa.Table(name, metadata, *columns, comment=description)


tenants = _table(
    "tenants",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("name", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("created_at", TS),
    sa.Column("updated_at", TS),
    description="Customer accounts; each active id is a tenant partition.",
)

mailboxes = _table(
    "mailboxes",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("email_address", sa.Text),
    sa.Column("provider", sa.Text),
    sa.Column("daily_limit", sa.Integer),
    sa.Column("warmup_enabled", sa.Boolean),
    sa.Column("created_at", TS),
    sa.Column("updated_at", TS),
    description="Sending mailboxes connected by tenants, with their daily sending limit.",
)

campaigns = _table(
    "campaigns",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("name", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("created_at", TS),
    sa.Column("updated_at", TS),
    description="Outreach campaigns.",
)

sequence_steps = _table(
    "sequence_steps",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("campaign_id", sa.Text),
    sa.Column("step_number", sa.Integer),
    sa.Column("subject", sa.Text),
    sa.Column("delay_days", sa.Integer),
    sa.Column("created_at", TS),
    sa.Column("updated_at", TS),
    description="The numbered steps of a campaign's email sequence.",
)

leads = _table(
    "leads",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("campaign_id", sa.Text),
    sa.Column("email", sa.Text),
    sa.Column("first_name", sa.Text),
    sa.Column("last_name", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("created_at", TS),
    sa.Column("first_contacted_at", TS),
    sa.Column("first_replied_at", TS),
    sa.Column("converted_at", TS),
    sa.Column("unsubscribed_at", TS),
    sa.Column("updated_at", TS),
    description="Prospects, with the time of each milestone of their funnel.",
)

emails = _table(
    "emails",
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("campaign_id", sa.Text),
    sa.Column("sequence_step_id", sa.Text),
    sa.Column("mailbox_id", sa.Text),
    sa.Column("lead_id", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("sent_at", TS),
    sa.Column("opened", TS),
    sa.Column("clicked", TS),
    sa.Column("replied", TS),
    sa.Column("bounce_type", sa.Text),
    sa.Column("unsubscribed", TS),
    sa.Column("complaint", TS),
    sa.Column("updated_at", TS),
    description="One row per outreach email; engagement times are filled in later, often days on.",
)

warmup_emails = _table(
    "warmup_emails",
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("mailbox_id", sa.Text),
    sa.Column("sent_at", TS),
    sa.Column("landed_in", sa.Text),
    sa.Column("replied", TS),
    sa.Column("rescued_from_spam", TS),
    sa.Column("updated_at", TS),
    description="Warmup traffic between mailboxes of the warmup network, with where each landed.",
)

subscriptions = _table(
    "subscriptions",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("plan", sa.Text),
    sa.Column("seats", sa.Integer),
    sa.Column("mrr_cents", sa.BigInteger),
    sa.Column("currency", sa.CHAR(3)),
    sa.Column("status", sa.Text),
    sa.Column("started_at", TS),
    sa.Column("canceled_at", TS),
    sa.Column("updated_at", TS),
    description="Tenants' subscriptions: plan, seats and monthly recurring revenue.",
)

invoices = _table(
    "invoices",
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("subscription_id", sa.Text),
    sa.Column("currency", sa.CHAR(3)),
    sa.Column("amount_cents", sa.BigInteger),
    sa.Column("status", sa.Text),
    sa.Column("issued_at", TS),
    sa.Column("paid_at", TS),
    sa.Column("amount_refunded_cents", sa.BigInteger),
    sa.Column("refunded_at", TS),
    sa.Column("updated_at", TS),
    description="Invoices in minor currency units, with issue, payment and refund times.",
)

admin_actions = _table(
    "admin_actions",
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("tenant_id", sa.Text),
    sa.Column("actor_id", sa.Text),
    sa.Column("actor_role", sa.Text),
    sa.Column("action", sa.Text),
    sa.Column("target_type", sa.Text),
    sa.Column("target_id", sa.Text),
    sa.Column("ip_address", INET),
    sa.Column("details", JSONB),
    sa.Column("occurred_at", TS),
    sa.Column("recorded_at", TS),
    description="Append-only log of what tenant admins did (the compliance source).",
)
