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

import concurrent.futures
import datetime as dt
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._core.utils import make_new_run_id

from analytics_pipeline.assets.rollups import OLTP_POOL
from analytics_pipeline.automation.planning import PlannedRun
from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.instance.run_health import describe_wait, local_run_tags, reap_dead_runs
from analytics_pipeline.partitions import (
    FIX_CLI_FILTER,
    MAX_PARTITIONS_PER_RUN,
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    add_tenants,
    check_days_in_partitions,
)
from analytics_pipeline.progress import watching_run, watching_runs
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
    load_job: Callable[[], dg.JobDefinition],
    plans: list[tuple[str, PlannedRun]],
    echo: Callable[[str], None] = print,
    workers: int = 1,
) -> list[BackfillRun]:
    """Execute the planned runs of the job `load_job()` returns and record them in `instance`:
    here, one after another, or with `workers` > 1 that many at once, each in a worker process
    of its own that calls `load_job` itself (a module-level function: it is pickled by name, as
    a run worker launched by the daemon loads the code location).

    Why processes: a run's cost is Dagster's Python building each partition's materialization
    and PostgreSQL storing it, in turn; one run keeps about one core busy. Two at once keep a
    2-core machine busy (the `oltp` pool still bounds the steps reading OLTP at once).
    """
    if workers < 1:
        raise ConfigurationError(f"--workers {workers} must be at least 1")
    # A run killed earlier would otherwise hold its pool slots and stall these runs for ever.
    reap_dead_runs(instance, echo)
    if workers == 1 or len(plans) < 2:
        return _run_here(instance, load_job(), plans, echo)
    return _run_in_workers(instance, load_job, plans, echo, workers)


def _run_here(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    plans: list[tuple[str, PlannedRun]],
    echo: Callable[[str], None],
) -> list[BackfillRun]:
    done = []
    order = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    for i, (group, run) in enumerate(plans, start=1):
        waiting = describe_wait(instance, OLTP_POOL)
        if waiting:
            echo(f"{group}: {waiting}")
        run_id = make_new_run_id()
        label = f"backfill {i}/{len(plans)} ({group})"
        with watching_run(instance, run_id, label, _partition_assets(run, order)):
            success = execute_planned_run(job, instance, run, run_id)
        echo(_finished(group, run, run_id, success))
        done.append(BackfillRun(group, run, run_id, success))
    return done


def _partition_assets(run: PlannedRun, order: Sequence[str]) -> int:
    tenants = order.index(run.last.tenant_id) - order.index(run.first.tenant_id) + 1
    return tenants * ((run.last.day - run.first.day).days + 1) * len(run.assets)


def _finished(group: str, run: PlannedRun, run_id: str, success: bool) -> str:
    return (
        f"{group}: {', '.join(run.assets)} for {run.first.tenant_id}..{run.last.tenant_id} "
        f"x {run.first.day}..{run.last.day}: run {run_id} "
        f"{'succeeded' if success else 'FAILED (see the run in the UI)'}"
    )


def execute_planned_run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, run: PlannedRun, run_id: str
) -> bool:
    """One planned run of `job`, executed in this process and recorded in `instance`."""
    request = run.request("backfill")
    result = job.execute_in_process(
        instance=instance,
        run_id=run_id,
        tags={**request.tags, REASON_TAG: "backfill", **local_run_tags()},
        asset_selection=request.asset_selection,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    return result.success


def _execute_in_worker(
    instance_ref: InstanceRef,
    load_job: Callable[[], dg.JobDefinition],
    run: PlannedRun,
    run_id: str,
) -> bool:
    """`execute_planned_run` in a worker process."""
    with dg.DagsterInstance.from_ref(instance_ref) as instance:
        return execute_planned_run(load_job(), instance, run, run_id)


def _run_in_workers(
    instance: dg.DagsterInstance,
    load_job: Callable[[], dg.JobDefinition],
    plans: list[tuple[str, PlannedRun]],
    echo: Callable[[str], None],
    workers: int,
) -> list[BackfillRun]:
    ref = instance.get_ref()
    order = instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    total = sum(_partition_assets(run, order) for _, run in plans)
    waiting = describe_wait(instance, OLTP_POOL)
    if waiting:
        echo(f"backfill: {waiting}")
    run_ids = [make_new_run_id() for _ in plans]
    results: dict[int, bool] = {}
    label = f"backfill ({len(plans)} runs, {workers} at once)"
    # spawn, not fork: the parent holds connection pools and threads a fork would copy.
    context = multiprocessing.get_context("spawn")
    with (
        watching_runs(instance, label, total) as watcher,
        concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool,
    ):
        futures = {}
        for i, ((_, run), run_id) in enumerate(zip(plans, run_ids, strict=True)):
            watcher.watch(run_id)
            futures[pool.submit(_execute_in_worker, ref, load_job, run, run_id)] = i
        for future in concurrent.futures.as_completed(futures):
            i = futures[future]
            group, run = plans[i]
            error = future.exception()
            if error is not None:
                echo(f"{group}: run {run_ids[i]} could not be executed: {error!r}")
            results[i] = error is None and bool(future.result())
            echo(_finished(group, run, run_ids[i], results[i]))
    return [BackfillRun(group, run, run_ids[i], results[i]) for i, (group, run) in enumerate(plans)]
