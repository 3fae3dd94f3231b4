"""Turning a set of affected partitions into a few range runs, with bounded waste.

A Dagster run covers a rectangle: a range of tenants (in the order they were registered) times a
range of days, for a selection of assets. Refreshing costs per run (launch, resources, the
step's set-up: `run_cost`, in partitions, ~2,000) and per partition. The planner covers the
changed partitions with rectangles so that

- **waste is bounded**: the unchanged partitions it refreshes never cost more than what the
  plan spends on the changed ones, `area <= max_waste * changed + run_cost * runs` (max_waste
  2): a burst with changes in every corner of the tenant x day matrix no longer becomes one run
  over all of it;
- **runs are few**: starting from exact stripes (per tenant, runs of consecutive days, stacked
  across neighbouring tenants with the same days), neighbouring rectangles are merged, the
  cheapest first, while a merge adds fewer partitions than the run it saves (or there are more
  than `max_runs`), as far as the bound allows.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import dagster as dg

from analytics_pipeline.automation.exact_runs import ExactRun, exact_runs
from analytics_pipeline.names import table_key
from analytics_pipeline.partitions import (
    MAX_PARTITIONS_PER_RUN,
    TenantDay,
    consecutive_spans,
    range_tags,
)
from analytics_pipeline.run_tags import REASON_TAG, TENANT_TAG


@dataclass(frozen=True)
class PlannedRun:
    assets: tuple[str, ...]  # rollup names
    first: TenantDay
    last: TenantDay

    def request(
        self, reason: str, run_key: str | None = None, job_name: str | None = None
    ) -> dg.RunRequest:
        """The run's request; `job_name` for a sensor that targets several jobs."""
        tags = {**range_tags(self.first, self.last), REASON_TAG: reason}
        if self.first.tenant_id == self.last.tenant_id:
            # Lets the run queue cap concurrent runs per tenant (dagster.yaml).
            tags[TENANT_TAG] = self.first.tenant_id
        return dg.RunRequest(
            run_key=run_key,
            job_name=job_name,
            asset_selection=[table_key(name) for name in self.assets],
            tags=tags,
        )


# (first tenant position, last tenant position, first day, last day), inclusive; days as
# ordinals (date.toordinal()), which keeps the arithmetic of a large burst cheap.
_Rect = tuple[int, int, int, int]

DEFAULT_MAX_WASTE = 2.0
# What one more run costs, in partitions refreshed: a run's fixed cost (launch, resources,
# the step's set-up) is ~1-3 s, and one more partition of a run ~0.5-1 ms (docs/SCALING.md).
DEFAULT_RUN_COST = 2000


def _area(r: _Rect) -> int:
    return (r[1] - r[0] + 1) * (r[3] - r[2] + 1)


def _bbox(a: _Rect, b: _Rect) -> _Rect:
    return (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))


def cover(
    changed: dict[int, set[int]],
    *,
    max_runs: int,
    run_cost: int = DEFAULT_RUN_COST,
    max_waste: float = DEFAULT_MAX_WASTE,
) -> list[_Rect]:
    """Rectangles covering every (tenant position, day) in `changed`, within the waste bound:
    area <= max_waste * changed + run_cost * runs (see the module docstring)."""
    total = sum(len(days) for days in changed.values())
    if not total:
        return []
    # 1. Per tenant, runs of consecutive days; 2. neighbouring tenants with the same days
    #    stacked into one rectangle. Neither adds an unchanged partition.
    stripes: dict[tuple[int, int], list[int]] = {}
    for tenant in sorted(changed):
        for span in consecutive_spans(changed[tenant]):
            stripes.setdefault(span, []).append(tenant)
    rects: list[_Rect] = []
    for (first, last), tenants in stripes.items():
        start = prev = tenants[0]
        for t in tenants[1:]:
            if t != prev + 1:
                rects.append((start, prev, first, last))
                start = t
            prev = t
        rects.append((start, prev, first, last))
    # 3. Merge rectangles that are neighbours in (tenant, day) order, the pair adding the
    #    fewest unchanged partitions first, while a merge saves more than it adds (or there are
    #    more than max_runs) and the bound holds. A linked list with a lazily updated heap.
    rects.sort()
    area = sum(_area(r) for r in rects)
    alive = dict(enumerate(rects))
    nxt = {i: i + 1 for i in range(len(rects) - 1)}
    prv = {i + 1: i for i in range(len(rects) - 1)}

    def added(a: int, b: int) -> int:
        return _area(_bbox(alive[a], alive[b])) - _area(alive[a]) - _area(alive[b])

    heap = [(added(i, i + 1), i, i + 1) for i in range(len(rects) - 1)]
    heapq.heapify(heap)
    while heap:
        cost, i, j = heapq.heappop(heap)
        if i not in alive or j not in alive or nxt.get(i) != j or cost != added(i, j):
            continue
        if cost >= run_cost and len(alive) <= max_runs:
            break  # the cheapest merge left costs more than the run it saves
        if area + cost > max_waste * total + run_cost * (len(alive) - 1):
            continue
        area += cost
        alive[i] = _bbox(alive[i], alive[j])
        del alive[j]
        prv.pop(j, None)
        if j in nxt:
            nxt[i] = nxt.pop(j)
            prv[nxt[i]] = i
        else:
            nxt.pop(i, None)
        for a, b in ((prv.get(i), i), (i, nxt.get(i))):
            if a is not None and b is not None:
                heapq.heappush(heap, (added(a, b), a, b))
    return sorted(alive.values())


@dataclass(frozen=True)
class _Covering:
    run: PlannedRun
    refreshed: int  # partition-assets the run refreshes: its area x its assets
    # The affected partitions inside it, per asset, as (tenant position, day ordinal): plain
    # tuples, because a burst's planning handles every changed partition a few times.
    changed: dict[str, list[tuple[int, int]]]


def _covering_runs(
    affected: dict[str, set[tuple[str, dt.date]]],
    tenant_order: list[str],
    *,
    first_day: dt.date,
    last_day: dt.date,
    max_runs: int,
    run_cost: int,
    max_waste: float,
    exclude: Collection[str],
) -> list[_Covering]:
    position = {t: i for i, t in enumerate(tenant_order)}
    lo_day, hi_day = first_day.toordinal(), last_day.toordinal()
    changed: dict[int, set[int]] = {}
    assets_at: dict[int, dict[int, set[str]]] = {}  # tenant position -> day -> assets
    for name, parts in affected.items():
        for tenant, day in parts:
            t, d = position.get(tenant), day.toordinal()
            if t is not None and tenant not in exclude and lo_day <= d <= hi_day:
                changed.setdefault(t, set()).add(d)
                assets_at.setdefault(t, {}).setdefault(d, set()).add(name)
    runs = []
    for segment in active_segments(tenant_order, exclude):
        inside = {t: changed[t] for t in (position[x] for x in segment) if t in changed}
        for lo, hi, first, last in cover(
            inside, max_runs=max_runs, run_cost=run_cost, max_waste=max_waste
        ):
            cells: dict[str, list[tuple[int, int]]] = {}
            for t in range(lo, hi + 1):
                for d, names in assets_at.get(t, {}).items():
                    if first <= d <= last:
                        for name in names:
                            cells.setdefault(name, []).append((t, d))
            run = PlannedRun(
                tuple(sorted(cells)),
                TenantDay(tenant_order[lo], dt.date.fromordinal(first)),
                TenantDay(tenant_order[hi], dt.date.fromordinal(last)),
            )
            area = (hi - lo + 1) * (last - first + 1)
            runs.append(_Covering(run, area * len(cells), cells))
    return runs


def plan_refresh(
    affected: dict[str, set[tuple[str, dt.date]]],
    tenant_order: list[str],
    *,
    first_day: dt.date,
    last_day: dt.date,
    max_runs: int,
    run_cost: int = DEFAULT_RUN_COST,
    max_waste: float = DEFAULT_MAX_WASTE,
    exclude: Collection[str] = (),
    exact_run_size: int | None = MAX_PARTITIONS_PER_RUN,
) -> list[PlannedRun | ExactRun]:
    """Runs covering every affected partition that Dagster knows (registered, in range), the
    waste bound held per run and counted in partition-assets.

    Tenants in `exclude` (offboarded) are never refreshed, nor inside a rectangle: each stretch
    of the order between them is planned on its own. A rectangle refreshes every selected table
    over its whole area. Each planned rectangle that would refresh more than `max_waste` times
    the partition-assets that changed inside it (changes scattered through the tenant x day
    matrix, or a table changed in a corner of a rectangle the others fill) is dropped, and its
    changed partitions not refreshed by a kept rectangle go to exact runs instead: at most
    `exact_run_size` partition-assets each, tenants in registration order. The partitions
    refreshed are then at most `max_waste` x those changed, whatever the burst's shape. With
    `exact_run_size` None, every rectangle is kept: the rectangles alone.
    """
    if exact_run_size is not None and exact_run_size < 1:
        raise ValueError(f"exact_run_size must be at least 1, got {exact_run_size}")
    coverings = _covering_runs(
        affected,
        tenant_order,
        first_day=first_day,
        last_day=last_day,
        max_runs=max_runs,
        run_cost=run_cost,
        max_waste=max_waste,
        exclude=exclude,
    )
    if exact_run_size is None:
        return [c.run for c in coverings]
    kept: list[_Covering] = []
    dropped: list[_Covering] = []
    for c in coverings:
        fits = c.refreshed <= max_waste * sum(map(len, c.changed.values()))
        (kept if fits else dropped).append(c)
    refreshed = {(name, cell) for c in kept for name, cells in c.changed.items() for cell in cells}
    leftover = {
        (t, d, name)
        for c in dropped
        for name, cells in c.changed.items()
        for t, d in cells
        if (name, (t, d)) not in refreshed
    }
    planned: list[PlannedRun | ExactRun] = [c.run for c in kept]
    return planned + exact_runs(sorted(leftover), tenant_order, exact_run_size)


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
