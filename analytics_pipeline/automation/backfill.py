"""Rebuilding any tenant x date range of any OLAP tables: one run per asset group.

A run covers a rectangle of (tenants in registration order) x (days). The chosen tenants are cut
into the fewest blocks that are contiguous in that order (all tenants: one block), and each block
becomes runs per asset group, executed here, in this process, and recorded in the Dagster
instance like any other run. A block's days are cut into chunks so that no run covers more than
`max_partitions` partitions (default 50,000: 500 tenants x 100 days): a run's memory stays
bounded (Dagster holds its planned events and partition keys at once), and a rebuild shows its
progress in the UI run by run instead of at the very end.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.utils import make_new_run_id

from analytics_pipeline.assets.rollups import OLTP_POOL
from analytics_pipeline.automation.planning import PlannedRun
from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.instance.run_health import describe_wait, local_run_tags, reap_dead_runs
from analytics_pipeline.partitions import (
    FIX_CLI_FILTER,
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    add_tenants,
    check_days_in_partitions,
)
from analytics_pipeline.progress import watching_run
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.run_tags import REASON_TAG


@dataclass(frozen=True)
class BackfillRun:
    group: str
    run: PlannedRun
    run_id: str
    success: bool


def select_rollups(groups: Sequence[str], tables: Sequence[str]) -> dict[str, list[Rollup]]:
    """The chosen rollups by asset group; nothing chosen means every registered table."""
    known_groups = sorted({r.group for r in REGISTRY})
    known_tables = [r.name for r in REGISTRY]
    for g in groups:
        if g not in known_groups:
            raise ConfigurationError(f"unknown asset group {g!r}; choose from {known_groups}")
    for t in tables:
        if t not in known_tables:
            raise ConfigurationError(f"unknown table {t!r}; choose from {known_tables}")
    chosen = [
        r for r in REGISTRY if (not groups and not tables) or r.group in groups or r.name in tables
    ]
    by_group: dict[str, list[Rollup]] = {}
    for r in chosen:
        by_group.setdefault(r.group, []).append(r)
    return by_group


def contiguous_blocks(chosen: Sequence[str], order: Sequence[str]) -> list[tuple[str, str]]:
    """Cut `chosen` tenants into runs of neighbours in `order`, as (first, last) pairs."""
    position = {t: i for i, t in enumerate(order)}
    blocks: list[list[str]] = []
    for t in sorted(set(chosen), key=position.__getitem__):
        if blocks and position[t] == position[blocks[-1][-1]] + 1:
            blocks[-1].append(t)
        else:
            blocks.append([t])
    return [(b[0], b[-1]) for b in blocks]


MAX_PARTITIONS_PER_RUN = 50_000


def day_chunks(
    first_day: dt.date, last_day: dt.date, days_per_run: int
) -> list[tuple[dt.date, dt.date]]:
    """[first_day, last_day] cut into consecutive (first, last) chunks of at most days_per_run."""
    chunks = []
    start = first_day
    while start <= last_day:
        end = min(last_day, start + dt.timedelta(days=days_per_run - 1))
        chunks.append((start, end))
        start = end + dt.timedelta(days=1)
    return chunks


def plan_backfill(
    instance: dg.DagsterInstance,
    *,
    first_day: dt.date,
    last_day: dt.date,
    tenants: Sequence[str] | None,
    groups: Sequence[str] = (),
    tables: Sequence[str] = (),
    max_partitions: int = MAX_PARTITIONS_PER_RUN,
) -> list[tuple[str, PlannedRun]]:
    if max_partitions < 1:
        raise ConfigurationError(
            f"--max-partitions-per-run {max_partitions} must be at least 1 (default "
            f"{MAX_PARTITIONS_PER_RUN:,})"
        )
    if first_day > last_day:
        raise ConfigurationError(f"--start {first_day} is after --end {last_day}")
    check_days_in_partitions(first_day, last_day, what="the backfill (--start/--end)")
    if tenants:
        # Validates every id first; adds the missing ones.
        add_tenants(instance, tenants, fix=FIX_CLI_FILTER)
    order = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    if not order:
        raise ConfigurationError(
            "no tenants are registered; pass --tenants, or let the "
            "tenant sensor (analytics-pipeline dev) register them"
        )
    blocks = contiguous_blocks(tenants or order, order)
    plans = []
    position = {t: i for i, t in enumerate(order)}
    for group, rollups in select_rollups(groups, tables).items():
        for first, last in blocks:
            width = position[last] - position[first] + 1
            for start_day, end_day in day_chunks(
                first_day, last_day, max(1, max_partitions // width)
            ):
                plans.append(
                    (
                        group,
                        PlannedRun(
                            tuple(r.name for r in rollups),
                            TenantDay(first, start_day),
                            TenantDay(last, end_day),
                        ),
                    )
                )
    return plans


def run_backfill(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    plans: list[tuple[str, PlannedRun]],
    echo: Callable[[str], None] = print,
) -> list[BackfillRun]:
    done = []
    # A run killed earlier would otherwise hold its pool slots and stall these runs for ever.
    reap_dead_runs(instance, echo)
    order = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    for i, (group, run) in enumerate(plans, start=1):
        request = run.request("backfill")
        waiting = describe_wait(instance, OLTP_POOL)
        if waiting:
            echo(f"{group}: {waiting}")
        tenants = order.index(run.last.tenant_id) - order.index(run.first.tenant_id) + 1
        days = (run.last.day - run.first.day).days + 1
        run_id = make_new_run_id()
        label = f"backfill {i}/{len(plans)} ({group})"
        with watching_run(instance, run_id, label, tenants * days * len(run.assets)):
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                tags={**request.tags, REASON_TAG: "backfill", **local_run_tags()},
                asset_selection=request.asset_selection,
                raise_on_error=False,
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        echo(
            f"{group}: {', '.join(run.assets)} for {run.first.tenant_id}..{run.last.tenant_id} "
            f"x {run.first.day}..{run.last.day}: run {result.run_id} "
            f"{'succeeded' if result.success else 'FAILED (see the run in the UI)'}"
        )
        done.append(BackfillRun(group, run, result.run_id, result.success))
    return done
