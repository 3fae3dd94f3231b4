"""Tenants: reading them from OLTP and registering them as partitions."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.partitions import add_tenants, split_tenant_ids
from analytics_pipeline.sources.schema import oltp_schema_exists
from analytics_pipeline.sources.tables import tenants


@dataclass(frozen=True)
class TenantSync:
    added: list[str]
    invalid: dict[str, str]  # tenant id -> why it was refused


def oltp_tenant_ids(conn: sa.Connection) -> list[str]:
    """Every tenant in OLTP that is not offboarded, in id order."""
    return list(
        conn.execute(
            sa.select(tenants.c.id).where(tenants.c.status != "offboarded").order_by(tenants.c.id)
        ).scalars()
    )


def sync_tenants(instance: dg.DagsterInstance, tenant_ids: list[str]) -> TenantSync:
    """Add the valid new ids as partitions; report, and skip, the ones that cannot be keys."""
    valid, invalid = split_tenant_ids(tenant_ids)
    return TenantSync(added=add_tenants(instance, valid), invalid=invalid)


def register_oltp_tenants(oltp_url: sa.URL, instance: dg.DagsterInstance) -> TenantSync | None:
    """Register the OLTP database's tenants as partitions; None when it has no tables yet."""
    engine = sa.create_engine(oltp_url)
    try:
        with engine.connect() as conn:
            if not oltp_schema_exists(conn):
                return None
            tenant_ids = oltp_tenant_ids(conn)
    finally:
        engine.dispose()
    return sync_tenants(instance, tenant_ids)
