"""The late-data planner: every changed partition is covered, and a burst never makes the
pipeline refresh more than ~2x the partitions that changed (issue: a burst across all tenants
used to request one run over the bounding rectangle, which could be every partition)."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from analytics_pipeline.automation.planning import DEFAULT_RUN_COST, PlannedRun, plan_runs

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
    return plan_runs(
        affected, TENANTS, first_day=DAY0, last_day=DAY0 + dt.timedelta(days=729), max_runs=max_runs
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
