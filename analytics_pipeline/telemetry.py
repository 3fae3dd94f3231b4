"""The pipeline's own infrastructure events (first seed's infra_* taxonomy), via the facade.

They are about the system, not a person: distinct_id is SYSTEM_ID and PostHog is told not to
create a person profile for it. Where a run covers a single tenant, the event carries that
tenant as a PostHog group, so dashboards can break pipeline health down by tenant.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.rollups.engine import RefreshResult
from analytics_pipeline.tracking import EventTracker

SYSTEM_ID = "analytics_pipeline"
COMPONENT = "analytics_pipeline"
_SYSTEM = {"$process_person_profile": False}


def _tenant_group(tenants: set[str]) -> dict[str, str] | None:
    return {"tenant": next(iter(tenants))} if len(tenants) == 1 else None


def rollup_latency(
    tracker: EventTracker,
    table: str,
    partitions: Sequence[TenantDay],
    run_id: str,
    *,
    result: RefreshResult | None = None,
    seconds: float | None = None,
) -> None:
    """infra_latency for one materialization: how long, how many rows and partitions."""
    tenants = {p.tenant_id for p in partitions}
    props: dict[str, object] = {
        **_SYSTEM,
        "component": COMPONENT,
        "operation": f"materialize:{table}",
        "duration_ms": round(1000 * (result.seconds if result else seconds or 0.0), 1),
        "partitions": len(partitions),
        "tenants": len(tenants),
        "run_id": run_id,
        "success": result is not None,
    }
    if result is not None:
        props.update(rows=result.rows_written, path=result.path)
    group = _tenant_group(tenants)
    if group:
        props["tenant_id"] = group["tenant"]
    tracker.track(SYSTEM_ID, "infra_latency", props, groups=group)


def pool_metrics(
    tracker: EventTracker, pool_name: str, engine: sa.Engine, run_id: str, tenants: set[str]
) -> None:
    """infra_connection_pool_metrics for one SQLAlchemy engine, as the step leaves it."""
    pool = engine.pool
    size = getattr(pool, "size", None)
    props: dict[str, object] = {
        **_SYSTEM,
        "component": COMPONENT,
        "pool": pool_name,
        "size": size() if callable(size) else 0,
        "checked_out": pool.checkedout() if hasattr(pool, "checkedout") else 0,
        # QueuePool.overflow() is negative while the pool has not opened all its connections.
        "overflow": max(0, pool.overflow()) if hasattr(pool, "overflow") else 0,
        "checked_in": pool.checkedin() if hasattr(pool, "checkedin") else 0,
        "run_id": run_id,
    }
    group = _tenant_group(tenants)
    if group:
        props["tenant_id"] = group["tenant"]
    tracker.track(SYSTEM_ID, "infra_connection_pool_metrics", props, groups=group)


def run_failed(
    tracker: EventTracker,
    *,
    job_name: str,
    run_id: str,
    error_type: str,
    tenant_id: str | None,
) -> None:
    """infra_error_rate for one failed run (errors=1; PostHog sums them into a rate).

    The error message stays in Dagster: it can quote row values, and this event leaves the
    company. `error_type` and the run id lead to it.
    """
    props: dict[str, object] = {
        **_SYSTEM,
        "component": COMPONENT,
        "errors": 1,
        "error_type": error_type,
        "job_name": job_name,
        "run_id": run_id,
    }
    group = None
    if tenant_id:
        props["tenant_id"] = tenant_id
        group = {"tenant": tenant_id}
    tracker.track(SYSTEM_ID, "infra_error_rate", props, groups=group)
