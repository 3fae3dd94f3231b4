"""`analytics.erasures`: the proof that a tenant was erased, and of nothing else.

One row per erasure: the tenant's pseudonym (a salted hash, never the id), who asked, when it
started and finished, and how many rows each store lost. Operators and auditors read it;
dashboards never do (it is not an asset, and no dashboard role is granted SELECT on it).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from analytics_pipeline.rollups.schema import metadata

TS = sa.TIMESTAMP(timezone=True)

erasures = sa.Table(
    "erasures",
    metadata,
    sa.Column("erasure_id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "tenant_hash",
        sa.Text,
        nullable=False,
        comment="Pseudonym of the erased tenant (HMAC-SHA256 with ANALYTICS_PSEUDONYM_SALT).",
    ),
    sa.Column("requested_by", sa.Text, nullable=False, comment="Who asked for the erasure."),
    sa.Column("requested_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Column(
        "completed_at",
        TS,
        nullable=True,
        comment="When every store was done; NULL while (or if) it is unfinished.",
    ),
    sa.Column(
        "rows_removed",
        JSONB,
        nullable=False,
        server_default=sa.text("'{}'::jsonb"),
        comment="Rows removed (or pseudonymised) per table, OLAP, Dagster and outbox.",
    ),
    sa.Index("erasures_tenant_hash", "tenant_hash"),
    comment="Erasure records (who, when, how much); for audits, never read by dashboards.",
)


def create_erasures(conn: sa.Connection) -> None:
    """Migration step: add the table to a deployment that predates it."""
    erasures.create(conn, checkfirst=True)
