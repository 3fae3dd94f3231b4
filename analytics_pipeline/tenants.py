"""Tenants: reading them from OLTP and registering them as partitions."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.errors import InvalidPartitionKeyError
from analytics_pipeline.partitions import add_tenants, validate_tenant_id
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
    valid, invalid = [], {}
    for tenant_id in tenant_ids:
        try:
            valid.append(validate_tenant_id(tenant_id))
        except InvalidPartitionKeyError as exc:
            invalid[tenant_id] = str(exc)
    return TenantSync(added=add_tenants(instance, valid), invalid=invalid)
