"""admin_audit_log: the compliance copy of admin actions, one row per action, never rewritten."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import INET, JSONB

from analytics_pipeline.rollups.schema import olap_table
from analytics_pipeline.rollups.spec import (
    COMPLIANCE_RECORDS,
    ChangeTracking,
    Invariant,
    Reconciliation,
    Rollup,
    WriteMode,
)
from analytics_pipeline.rollups.sql import Windows, utc_day
from analytics_pipeline.sources.tables import admin_actions

A = admin_actions
TS = sa.TIMESTAMP(timezone=True)

table = olap_table(
    "admin_audit_log",
    grain=[
        sa.Column(
            "action_id", sa.BigInteger, nullable=False, comment="admin_actions.id of the action."
        )
    ],
    columns=[
        sa.Column("occurred_at", TS, nullable=False, comment="When the admin did it."),
        sa.Column(
            "recorded_at",
            TS,
            nullable=False,
            comment="When the product recorded it (can be later: queued actions).",
        ),
        sa.Column("actor_id", sa.Text, nullable=False, comment="Who did it."),
        sa.Column("actor_role", sa.Text, nullable=False, comment="Their role at the time."),
        sa.Column("action", sa.Text, nullable=False, comment="What they did, e.g. role.change."),
        sa.Column("target_type", sa.Text, comment="Kind of object acted on, if any."),
        sa.Column("target_id", sa.Text, comment="Id of the object acted on, if any."),
        sa.Column("ip_address", INET, comment="Address the action came from, if known."),
        sa.Column("details", JSONB, nullable=False, comment="Action-specific details, verbatim."),
    ],
    comment="Compliance record of tenant admins' actions, copied verbatim from admin_actions "
    "by the UTC day of occurred_at. Append-only: never rewritten or deleted by re-runs.",
)


def select(w: Windows) -> sa.Select[Any]:
    return sa.select(
        A.c.tenant_id,
        utc_day(A.c.occurred_at).label("date"),
        A.c.id.label("action_id"),
        A.c.occurred_at,
        A.c.recorded_at,
        A.c.actor_id,
        A.c.actor_role,
        A.c.action,
        A.c.target_type,
        A.c.target_id,
        A.c.ip_address,
        A.c.details,
    ).select_from(w.rows_of(A, A.c.occurred_at))


ADMIN_AUDIT_LOG = Rollup(
    table=table,
    sources=(admin_actions,),
    select=select,
    group="compliance",
    description=(
        "The compliance record of what tenant admins did: one row per admin action, copied "
        "verbatim (actor, role, action, target, IP address, details) and filed under the UTC "
        "day it occurred. Append-only: a refresh adds actions it has not copied yet and never "
        "changes or deletes a row already there, even if the source row changed or vanished."
    ),
    write_mode=WriteMode.APPEND_ONLY,
    invariants=(
        Invariant(
            "filed_on_its_day",
            lambda t: utc_day(t.c.occurred_at) == t.c.date,
            "date is the UTC day of occurred_at",
        ),
    ),
    # Rows, not a sum (column None): every source action of the partition is present.
    reconciliation=Reconciliation(admin_actions, "occurred_at", indexed=True),
    tracks=(ChangeTracking(admin_actions, day_of=("occurred_at",), changed_at="recorded_at"),),
    retention=COMPLIANCE_RECORDS,
)
