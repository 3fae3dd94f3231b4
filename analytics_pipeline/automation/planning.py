"""Turning a set of affected partitions into a few range runs.

A Dagster run covers a rectangle: a range of tenants (in the order they were registered) times a
range of days, for a selection of assets. Few tenants changed: one run per tenant, over the span
of its changed days, for the assets it touched. Many tenants changed (a burst): one run over the
bounding rectangle of all of them, which re-computes some unchanged partitions (idempotent, and
set-based SQL makes them cheap) but keeps the number of runs, and Dagster's per-run cost, small.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from analytics_pipeline.errors import InvalidPartitionKeyError
from analytics_pipeline.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TenantDay,
    parse_partition_keys,
    range_tags,
)

TENANT_TAG = "analytics/tenant"
REASON_TAG = "analytics/reason"


@dataclass(frozen=True)
class PlannedRun:
    assets: tuple[str, ...]  # rollup names
    first: TenantDay
    last: TenantDay

    def request(self, reason: str, run_key: str | None = None) -> dg.RunRequest:
        tags = {**range_tags(self.first, self.last), REASON_TAG: reason}
        if self.first.tenant_id == self.last.tenant_id:
            # Lets the run queue cap concurrent runs per tenant (dagster.yaml).
            tags[TENANT_TAG] = self.first.tenant_id
        return dg.RunRequest(
            run_key=run_key,
            asset_selection=[dg.AssetKey(["analytics", name]) for name in self.assets],
            tags=tags,
        )


def plan_runs(
    affected: dict[str, set[tuple[str, dt.date]]],
    tenant_order: list[str],
    *,
    first_day: dt.date,
    last_day: dt.date,
    max_runs: int,
    exclude: Collection[str] = (),
) -> list[PlannedRun]:
    """Few runs covering every affected partition that Dagster knows (registered, in range).

    Tenants in `exclude` (offboarded) are never refreshed, nor inside a bounding rectangle.
    """
    position = {t: i for i, t in enumerate(tenant_order)}
    by_tenant: dict[str, dict[str, list[dt.date]]] = {}
    for name, parts in affected.items():
        for tenant, day in parts:
            if tenant in position and tenant not in exclude and first_day <= day <= last_day:
                by_tenant.setdefault(tenant, {}).setdefault(name, []).append(day)
    if not by_tenant:
        return []
    if len(by_tenant) <= max_runs:
        runs = []
        for tenant in sorted(by_tenant, key=position.__getitem__):
            days = [d for ds in by_tenant[tenant].values() for d in ds]
            runs.append(
                PlannedRun(
                    tuple(sorted(by_tenant[tenant])),
                    TenantDay(tenant, min(days)),
                    TenantDay(tenant, max(days)),
                )
            )
        return runs
    days = [d for per in by_tenant.values() for ds in per.values() for d in ds]
    assets = sorted({name for per in by_tenant.values() for name in per})
    runs = []
    # One bounding rectangle per stretch of the order free of excluded tenants.
    for segment in active_segments(tenant_order, exclude):
        changed = [t for t in segment if t in by_tenant]
        if changed:
            runs.append(
                PlannedRun(
                    tuple(assets),
                    TenantDay(changed[0], min(days)),
                    TenantDay(changed[-1], max(days)),
                )
            )
    return runs


def active_segments(tenant_order: Sequence[str], exclude: Collection[str]) -> list[list[str]]:
    """The registration order cut at every excluded tenant: the stretches a range run may span."""
    segments: list[list[str]] = [[]]
    for tenant in tenant_order:
        if tenant in exclude:
            segments.append([])
        else:
            segments[-1].append(tenant)
    return [s for s in segments if s]


def tenant_blocks(
    tenant_order: list[str], size: int, exclude: Collection[str] = ()
) -> list[tuple[str, str]]:
    """Consecutive blocks of registered, not excluded tenants, as (first, last) pairs."""
    return [
        (segment[i], segment[min(i + size, len(segment)) - 1])
        for segment in active_segments(tenant_order, exclude)
        for i in range(0, len(segment), size)
    ]


def run_tenant(tags: Mapping[str, str]) -> str | None:
    """The single tenant a run covers, from its tags; None for multi-tenant or unpartitioned runs.

    Runs planned here carry TENANT_TAG; runs launched from the UI or a backfill carry only their
    partition key or range.
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
