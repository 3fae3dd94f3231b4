"""The tags the pipeline puts on the runs it plans, and reading a run's tenants back from them.

Planning (automation/) writes them; the instance's bookkeeping (instance/forget.py) and the
failure sensor read them, so they live below both. So does the shape of an exact-refresh run's
config (assets/exact_refresh.py), which names its tenants exactly where no tag can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from analytics_pipeline.errors import InvalidPartitionKeyError
from analytics_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, parse_partition_keys

TENANT_TAG = "analytics/tenant"
# The stretch of tenants (registration order) of a planned exact-refresh run over several
# tenants, for filtering runs in the UI. The erasure reads the run's config instead: the stretch
# can hold tenants the run does not refresh, and a run launched by hand has no tags.
TENANTS_FIRST_TAG = "analytics/tenants_first"
TENANTS_LAST_TAG = "analytics/tenants_last"
REASON_TAG = "analytics/reason"


def run_tenant(tags: Mapping[str, str]) -> str | None:
    """The single tenant a run covers, from its tags; None for multi-tenant or unpartitioned runs.

    Runs the planner makes carry TENANT_TAG; runs launched from the UI or a backfill carry only
    their partition key or range.
    """
    if TENANT_TAG in tags:
        return tags[TENANT_TAG]
    keys = [
        tags[k]
        for k in ("dagster/partition", RANGE_START_TAG, RANGE_END_TAG)
        if k in tags and "|" in tags[k]
    ]
    try:
        tenants = {p.tenant_id for p in parse_partition_keys(keys)}
    except InvalidPartitionKeyError:
        return None
    return tenants.pop() if len(tenants) == 1 else None


EXACT_REFRESH_JOB = "refresh_exact_partitions"
EXACT_REFRESH_OP = "refresh_partitions"


def exact_run_tenants(run_config: Mapping[str, Any]) -> frozenset[str]:
    """The tenants an exact-refresh run refreshes (in any table), from its run config.

    Its config (`ops.refresh_partitions.config.partitions`: table -> tenant -> days) was checked
    against the job's schema when the run was launched; a run whose config lacks it lists none.
    """
    op = run_config.get("ops", {}).get(EXACT_REFRESH_OP, {})
    partitions = op.get("config", {}).get("partitions", {})
    return frozenset(tenant for by_tenant in partitions.values() for tenant in by_tenant)
