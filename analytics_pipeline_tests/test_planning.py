"""The late-data planner: every changed partition is covered, and a burst never makes the
pipeline refresh more than ~2x the partitions that changed (issue: a burst across all tenants
used to request one run over the bounding rectangle, which could be every partition)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from analytics_pipeline.automation.exact_runs import ExactRun
from analytics_pipeline.automation.planning import (
    DEFAULT_RUN_COST,
    PlannedRun,
    plan_refresh,
)

DAY0 = dt.date(2025, 1, 1)
TENANTS = [f"t{i:03d}" for i in range(500)]


def _days(n: int) -> list[dt.date]:
    return [DAY0 + dt.timedelta(days=i) for i in range(n)]


def _covered(run: PlannedRun) -> set[tuple[str, dt.date]]:
    lo, hi = TENANTS.index(run.first.tenant_id), TENANTS.index(run.last.tenant_id)
    days = (run.last.day - run.first.day).days + 1
    return {
        (TENANTS[t], run.first.day + dt.timedelta(days=d))
        for t in range(lo, hi + 1)
        for d in range(days)
    }


def _plan(affected: dict[str, set[tuple[str, dt.date]]], max_runs: int = 10) -> list[PlannedRun]:
    """The rectangles alone (no exact runs)."""
    return plan_refresh(
        affected,
        TENANTS,
        first_day=DAY0,
        last_day=DAY0 + dt.timedelta(days=729),
        max_runs=max_runs,
        exact_run_size=None,
    )


def _check(affected: dict[str, set[tuple[str, dt.date]]], runs: list[PlannedRun]) -> int:
    """Every changed (asset, partition) is in a run that selects the asset; returns the area."""
    by_tenant: dict[str, list[PlannedRun]] = {}
    area = 0
    for run in runs:
        lo, hi = TENANTS.index(run.first.tenant_id), TENANTS.index(run.last.tenant_id)
        area += (hi - lo + 1) * ((run.last.day - run.first.day).days + 1)
        for t in TENANTS[lo : hi + 1]:
            by_tenant.setdefault(t, []).append(run)
    for name, parts in affected.items():
        missing = [
            (t, d)
            for t, d in parts
            if not any(
                r.first.day <= d <= r.last.day and name in r.assets for r in by_tenant.get(t, [])
            )
        ]
        assert not missing, (name, missing[:5])
    return area


def _cheaper_than_the_extremes(changed: set, runs: list[PlannedRun], area: int) -> None:
    """The plan costs (runs x run cost + partitions) no more than one run per changed stripe of
    days (no waste, many runs), nor than the bounding rectangle where the bound allows it."""
    cost = DEFAULT_RUN_COST * len(runs) + area
    stripes = len({(t, d) for t, d in changed if (t, d - dt.timedelta(days=1)) not in changed})
    positions = [TENANTS.index(t) for t, _ in changed]
    days = [d for _, d in changed]
    bounding = (max(positions) - min(positions) + 1) * ((max(days) - min(days)).days + 1)
    assert cost <= DEFAULT_RUN_COST * stripes + len(changed)
    if bounding <= 2 * len(changed) + DEFAULT_RUN_COST:  # the bounding rectangle is allowed
        assert cost <= DEFAULT_RUN_COST + bounding


def test_a_burst_over_everything_is_one_run():
    every = {(t, d) for t in TENANTS[:50] for d in _days(60)}
    runs = _plan({"campaign_analytics": every, "lead_analytics": set(list(every)[:10])})
    assert len(runs) == 1
    assert _check({"campaign_analytics": every}, runs) == len(every)
    assert set(runs[0].assets) == {"campaign_analytics", "lead_analytics"}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scattered_changes_never_cost_more_than_twice_the_changed(seed):
    """Changes in the corners of the tenant x day matrix: the bounding rectangle would be the
    whole matrix (365,000 partitions) for a few thousand changed ones."""
    rng = random.Random(seed)
    days = _days(730)
    changed = {(rng.choice(TENANTS), rng.choice(days)) for _ in range(2000)}
    # plus a dense block (a bulk correction of a few tenants' last month)
    changed |= {(t, d) for t in TENANTS[100:140] for d in days[-30:]}
    affected = {"campaign_analytics": changed}
    runs = _plan(affected)
    area = _check(affected, runs)
    assert area <= 2 * len(changed) + DEFAULT_RUN_COST * len(runs), (area, len(runs))
    # The dense block (1,200 partitions of 40 tenants) takes a handful of runs, not 40.
    block = {(t, d) for t in TENANTS[100:140] for d in days[-30:]}
    assert len([r for r in runs if _covered(r) & block]) <= 5
    _cheaper_than_the_extremes(changed, runs, area)


def test_a_random_burst_everywhere_is_bounded_and_planned_quickly():
    """One in ten partitions of every tenant and day changed (a bulk UPDATE by id): few runs,
    and never more refreshed than the bound, planned well inside a sensor tick."""
    rng = random.Random(7)
    days = _days(730)
    changed = {(t, d) for t in TENANTS for d in days if rng.random() < 0.1}
    affected = {"campaign_analytics": changed, "lead_analytics": set(list(changed)[::3])}
    runs = _plan(affected)
    area = _check(affected, runs)
    assert area <= 2 * len(changed) + DEFAULT_RUN_COST * len(runs), (area, len(runs))
    _cheaper_than_the_extremes(changed, runs, area)


def test_nearby_changes_share_a_run_and_far_ones_do_not():
    """Two tenants close together: one run (a few unchanged partitions cost less than a run);
    a tenant far away in days: its own run (merging would refresh thousands for nothing)."""
    far = DAY0 + dt.timedelta(days=700)
    affected = {
        "campaign_analytics": {("t001", DAY0), ("t001", DAY0 + dt.timedelta(days=1))},
        "billing_analytics": {("t007", DAY0 + dt.timedelta(days=5))},
        "lead_analytics": {(t, far) for t in TENANTS[:400]},
    }
    runs = _plan(affected)
    assert _check(affected, runs) < 500
    near = [r for r in runs if r.first.day == DAY0]
    assert len(near) == 1 and near[0].assets == ("billing_analytics", "campaign_analytics")
    assert [(r.first.day, r.last.day) for r in runs if r not in near] == [(far, far)]


def test_unregistered_tenants_and_days_out_of_range_are_left_out():
    affected = {"campaign_analytics": {("nobody", DAY0), ("t001", DAY0 - dt.timedelta(days=1))}}
    assert _plan(affected) == []


def _refreshed(affected: dict[str, set[tuple[str, dt.date]]], plan: list) -> int:
    """Checks that `plan` (plan_refresh's) refreshes every changed (asset, partition), its exact
    runs only changed ones, each once; returns the partition-assets it refreshes."""
    ranges = [r for r in plan if isinstance(r, PlannedRun)]
    exact = [r for r in plan if isinstance(r, ExactRun)]
    in_exact = [
        (name, (p.tenant_id, p.day)) for r in exact for name, ps in r.partitions.items() for p in ps
    ]
    assert len(in_exact) == len(set(in_exact)), "an exact partition is refreshed twice"
    assert all(p in affected[name] for name, p in in_exact), (
        "an exact run refreshes an unchanged one"
    )
    leftover = {
        name: parts - {p for n, p in in_exact if n == name} for name, parts in affected.items()
    }
    _check({n: p for n, p in leftover.items() if p}, ranges)
    area = sum(len(_covered(r)) * len(r.assets) for r in ranges)
    return area + len(in_exact)


def _plan_refresh(affected, size: int = 50_000) -> list:
    return plan_refresh(
        affected,
        TENANTS,
        first_day=DAY0,
        last_day=DAY0 + dt.timedelta(days=729),
        max_runs=10,
        exact_run_size=size,
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_a_burst_scattered_through_every_tenant_and_day_refreshes_at_most_twice_what_changed(seed):
    """The production-scale bench's burst: a few percent of three tables' partitions, scattered
    through all 500 tenants x 730 days. Rectangles alone refreshed ~12x what changed there; with
    exact runs the plan refreshes at most 2x (counted per partition-asset), in a few runs."""
    rng = random.Random(seed)
    days = _days(730)
    affected = {
        name: {(t, d) for t in TENANTS for d in days if rng.random() < rate}
        for name, rate in (
            ("campaign_analytics", 0.05),
            ("lead_analytics", 0.02),
            ("billing_analytics", 0.005),
        )
    }
    # plus a dense block, which a range run refreshes best
    affected["campaign_analytics"] |= {(t, d) for t in TENANTS[100:140] for d in days[-30:]}
    changed = sum(map(len, affected.values()))
    plan = _plan_refresh(affected, size=10_000)
    assert _refreshed(affected, plan) <= 2 * changed
    exact = [r for r in plan if isinstance(r, ExactRun)]
    assert exact and all(r.size <= 10_000 for r in exact)
    assert len(exact) == -(-sum(r.size for r in exact) // 10_000)  # full runs but the last
    assert any(isinstance(r, PlannedRun) for r in plan)  # the block stays a range run


def test_a_burst_that_a_rectangle_covers_well_stays_a_range_run():
    """Exact runs are for what rectangles cannot cover within the bound: a dense burst is still
    the one range run the rectangles alone give (the UI's partition ranges, in-progress status)."""
    every = {(t, d) for t in TENANTS[:50] for d in _days(60)}
    affected = {"campaign_analytics": every, "lead_analytics": set(list(every)[:10])}
    plan = _plan_refresh(affected)
    assert plan == _plan(affected) and len(plan) == 1


def test_an_exact_run_is_cut_across_tenants_in_registration_order():
    """Exact runs split at `exact_run_size`; each names the stretch of tenants it spans, which is
    what the erasure checks before it removes a tenant (instance/forget.py)."""
    affected = {
        "campaign_analytics": {
            (t, DAY0 + dt.timedelta(days=3 * i)) for i, t in enumerate(TENANTS[:30])
        }
    }
    plan = _plan_refresh(affected, size=10)
    assert [type(r) for r in plan] == [ExactRun] * 3
    assert [(r.first_tenant, r.last_tenant) for r in plan] == [
        ("t000", "t009"),
        ("t010", "t019"),
        ("t020", "t029"),
    ]
    assert plan[1].request("late-data").tags["analytics/tenants_first"] == "t010"
