"""The tags the pipeline puts on the runs it plans, and reading a run's tenant back from them.

Planning (automation/) writes them; the instance's bookkeeping (instance/forget.py) and the
failure sensor read them, so they live below both.
"""

from __future__ import annotations

from collections.abc import Mapping

from analytics_pipeline.errors import InvalidPartitionKeyError
from analytics_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, parse_partition_keys

TENANT_TAG = "analytics/tenant"
# The stretch of tenants (registration order) of a run that has no partition range: an
# exact-refresh run (assets/exact_refresh.py) over several tenants.
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
