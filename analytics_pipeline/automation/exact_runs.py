"""Exact runs: the partitions no rectangle covers within the waste bound, cut into runs of the
exact-refresh job (assets/exact_refresh.py). The planner (planning.py) decides what goes here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

from analytics_pipeline.assets import exact_refresh
from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.run_tags import REASON_TAG, TENANT_TAG, TENANTS_FIRST_TAG, TENANTS_LAST_TAG


@dataclass(frozen=True)
class ExactRun:
    """A run of the exact-refresh job: exactly these partitions of each table, nothing around
    them (assets/exact_refresh.py). For changes too scattered for any rectangle."""

    # rollup name -> tenant (in registration order) -> its day ordinals, sorted
    days: dict[str, dict[str, list[int]]]
    first_tenant: str  # the stretch of the registration order its partitions lie in
    last_tenant: str

    @property
    def size(self) -> int:
        """Partition-assets the run refreshes."""
        return sum(len(d) for by_tenant in self.days.values() for d in by_tenant.values())

    @property
    def partitions(self) -> dict[str, list[TenantDay]]:
        """Per rollup name, its partitions, sorted."""
        return {
            name: [
                TenantDay(t, dt.date.fromordinal(d)) for t, days in by_tenant.items() for d in days
            ]
            for name, by_tenant in self.days.items()
        }

    def request(self, reason: str) -> dg.RunRequest:
        tags = {REASON_TAG: reason}
        if self.first_tenant == self.last_tenant:
            tags[TENANT_TAG] = self.first_tenant
        else:
            # No partition range shows its tenants in the UI's run list: the stretch does. (The
            # erasure reads the run's config, which lists them exactly: forget.py.)
            tags |= {TENANTS_FIRST_TAG: self.first_tenant, TENANTS_LAST_TAG: self.last_tenant}
        return exact_refresh.request(exact_refresh.encode_days(self.days), tags)


def exact_runs(
    ordered: list[tuple[int, int, str]], tenant_order: list[str], size: int
) -> list[ExactRun]:
    """(tenant position, day ordinal, rollup name)s, sorted, cut into runs of at most `size`,
    so that each run spans a stretch of neighbouring tenants."""
    runs = []
    for i in range(0, len(ordered), size):
        part = ordered[i : i + size]
        chunk: dict[str, dict[str, list[int]]] = {}
        for t, d, name in part:
            chunk.setdefault(name, {}).setdefault(tenant_order[t], []).append(d)
        runs.append(
            ExactRun(
                {name: chunk[name] for name in sorted(chunk)},
                tenant_order[part[0][0]],
                tenant_order[part[-1][0]],
            )
        )
    return runs
