"""Backfills of (tenant, date) partitions become a few rectangular runs (instance/backfill_runs.py).

Why: Dagster turns a backfill of a multi-partition range into one run per key of one dimension
(500 tenants -> 500 runs, hours of launches at production scale). The replacement must cover
exactly the requested partitions (no partition lost, none run twice, none added), keep the
assets' bound on partitions per run, and stop being used unnoticed when a Dagster upgrade changes
the function it replaces.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions import automation_tick_evaluation_context as tick
from dagster._core.definitions.events import AssetKeyPartitionKey
from dagster._core.execution import asset_backfill

from analytics_pipeline.instance import backfill_logs, backfill_runs
from analytics_pipeline.partitions import (
    MAX_PARTITIONS_PER_RUN,
    add_tenants,
    tenant_daily_partitions,
)
from analytics_pipeline.rollups.tables import REGISTRY

START = dt.date(2026, 10, 1)
TENANTS = [f"tenant-{i:03d}" for i in range(1, 13)]


@pytest.fixture
def registered(clean_instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """The module's PostgreSQL-backed instance with twelve tenants registered."""
    add_tenants(clean_instance, TENANTS)
    return clean_instance


@pytest.fixture
def stock() -> Iterator[None]:
    """Dagster's own function in place for one test, the project's restored afterwards."""
    backfill_runs.uninstall()
    try:
        yield
    finally:
        backfill_runs.install()


def _keys_in(
    parts: dg.MultiPartitionsDefinition, ranges: list[dg.PartitionKeyRange], store: object
) -> list[str]:
    with dg.partition_loading_context(dynamic_partitions_store=store):  # type: ignore[arg-type]
        return [k for r in ranges for k in parts.get_partition_keys_in_range(r)]


def test_the_replaced_dagster_function_is_the_pinned_one() -> None:
    # A new Dagster may split backfills differently (or fix it): review backfill_runs.py, then
    # move the pin to the new source's hash.
    assert backfill_runs.stock_source_sha256() == backfill_runs.STOCK_SOURCE_SHA256
    assert backfill_runs.job_stock_source_sha256() == backfill_runs.JOB_STOCK_SOURCE_SHA256


@pytest.mark.parametrize("bound", [None, 1, 7, 40, 10_000])
@pytest.mark.parametrize("share", [1.0, 0.97, 0.5, 0.05])
def test_rectangles_cover_exactly_the_requested_partitions(
    registered: dg.DagsterInstance, bound: int | None, share: float
) -> None:
    parts = tenant_daily_partitions(START)
    with dg.partition_loading_context(dynamic_partitions_store=registered):
        every = parts.get_partition_keys()
    rng = random.Random(f"{bound}-{share}")
    wanted = [k for k in every if rng.random() < share]

    ranges = backfill_runs.covering_ranges(parts, wanted, bound, registered)

    covered = _keys_in(parts, ranges, registered)
    assert sorted(covered) == sorted(wanted)  # every requested partition, each exactly once
    if bound is not None:
        assert max(len(_keys_in(parts, [r], registered)) for r in ranges) <= bound
    if share == 1.0 and bound is None:
        assert len(ranges) == 1
    first_days = [
        parts.get_partition_key_from_str(r.start).keys_by_dimension["date"] for r in ranges
    ]
    assert first_days == sorted(first_days)  # history first, as the CLI rebuild runs


def test_a_bound_cuts_days_and_keeps_every_tenant(registered: dg.DagsterInstance) -> None:
    # 12 tenants x 40 days with at most 120 partitions a run: 4 runs of all tenants x 10 days.
    parts = tenant_daily_partitions(START)
    days = [(START + dt.timedelta(days=i)).isoformat() for i in range(40)]
    wanted = [str(dg.MultiPartitionKey({"tenant": t, "date": d})) for t in TENANTS for d in days]

    ranges = backfill_runs.covering_ranges(parts, wanted, 120, registered)

    spans = [
        (
            parts.get_partition_key_from_str(r.start).keys_by_dimension,
            parts.get_partition_key_from_str(r.end).keys_by_dimension,
        )
        for r in ranges
    ]
    assert [(a["tenant"], b["tenant"]) for a, b in spans] == [(TENANTS[0], TENANTS[-1])] * 4
    assert [(a["date"], b["date"]) for a, b in spans] == [
        (days[i], days[i + 9]) for i in (0, 10, 20, 30)
    ]


def test_bad_bounds_are_refused_with_the_value(registered: dg.DagsterInstance) -> None:
    with pytest.raises(ValueError, match="at least 1, not 0"):
        backfill_runs.covering_ranges(tenant_daily_partitions(START), [], 0, registered)


def _backfill_requests(
    defs: dg.Definitions, instance: dg.DagsterInstance
) -> tuple[list[dg.RunRequest], int]:
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.get_all_asset_keys() if graph.get(k).partitions_def is not None]
    parts = graph.get(keys[0]).partitions_def
    assert parts is not None
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        every = parts.get_partition_keys()
        asked = [AssetKeyPartitionKey(k, p) for k in keys for p in every]
        requests = tick.build_run_requests_with_backfill_policies(asked, graph, instance)
    return list(requests), len(every)


def test_backfilling_all_seven_tables_is_one_run_not_one_per_tenant(
    defs: dg.Definitions, registered: dg.DagsterInstance, stock: None
) -> None:
    # What the daemon does with the UI's "backfill all partitions" of every table: Dagster's
    # own split first (one run per tenant), then the project's (one run: far below the bound).
    stock_requests, _ = _backfill_requests(defs, registered)
    backfill_runs.install()
    requests, n_partitions = _backfill_requests(defs, registered)

    assert len(stock_requests) == len(TENANTS)
    assert n_partitions <= MAX_PARTITIONS_PER_RUN
    assert len(requests) == 1
    (request,) = requests
    assert set(request.asset_selection or []) == {
        dg.AssetKey(["analytics", r.name]) for r in REGISTRY
    }
    parts = tenant_daily_partitions()
    with dg.partition_loading_context(dynamic_partitions_store=registered):
        run_keys = parts.get_partition_keys_in_range(
            dg.PartitionKeyRange(
                request.tags["dagster/asset_partition_range_start"],
                request.tags["dagster/asset_partition_range_end"],
            )
        )
        assert sorted(run_keys) == sorted(parts.get_partition_keys())


def test_other_partitionings_take_dagster_s_own_path(registered: dg.DagsterInstance) -> None:
    daily = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-03-01")
    policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=7)
    args = ([dg.AssetKey("x")], [], policy, frozenset(daily.get_partition_keys()), daily, {})
    ours = tick._build_run_requests_with_backfill_policy(*args, registered)
    backfill_runs.uninstall()
    try:
        theirs = tick._build_run_requests_with_backfill_policy(*args, registered)
    finally:
        backfill_runs.install()
    assert [r.tags for r in ours] == [r.tags for r in theirs]
    assert len(ours) == 9  # 59 days, 7 a run


def test_the_shortened_backfill_log_function_is_the_pinned_one() -> None:
    # Review instance/backfill_logs.py against the new Dagster before moving the pin.
    assert backfill_logs.stock_source_sha256() == backfill_logs.STOCK_SOURCE_SHA256


def test_large_subsets_are_logged_as_a_count_and_small_ones_as_dagster_does(
    registered: dg.DagsterInstance,
) -> None:
    # The daemon logged every key of every asset at each turn: 8.4 MB lines at production scale.
    parts = tenant_daily_partitions(START)
    with dg.partition_loading_context(dynamic_partitions_store=registered):
        every = parts.get_partition_keys()
        big = parts.subset_with_partition_keys(every)
        small = parts.subset_with_partition_keys(every[:3])
        text = asset_backfill._partition_subset_str(big, parts)
        backfill_logs.uninstall()
        try:
            stock_big = asset_backfill._partition_subset_str(big, parts)
            stock_small = asset_backfill._partition_subset_str(small, parts)
        finally:
            backfill_logs.install()
        assert asset_backfill._partition_subset_str(small, parts) == stock_small
    first = sorted(every)[: backfill_logs.MAX_KEYS_SHOWN]
    assert text == f"{len(every):,} partitions, the first 20: {', '.join(first)}, ..."
    assert len(text) < 1_000 < len(stock_big)


def test_a_job_backfill_resumed_half_way_submits_exactly_what_no_run_holds(
    registered: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A daemon that stopped after creating some of a job backfill's runs (no checkpoint is
    # saved before all are submitted) must, on its next turn, cover exactly the keys no run of
    # the backfill holds yet: none twice, none lost. Then, with the checkpoint at the last key,
    # nothing more. On the job's partition set as the code server serves it.
    import logging

    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.test_utils import create_test_daemon_workspace_context, load_remote_repo
    from dagster._core.workspace.load_target import ModuleTarget

    from analytics_pipeline.names import REFRESH_JOB
    from analytics_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG

    monkeypatch.setenv("ANALYTICS_PARTITIONS_START", START.isoformat())
    target = ModuleTarget(
        module_name="analytics_pipeline.definitions",
        attribute=None,
        working_directory=None,
        location_name="analytics_pipeline",
    )
    parts = tenant_daily_partitions(START)
    days = [f"2026-10-{d:02d}" for d in range(3, 13)]
    wanted = [f"{day}|{tenant}" for tenant in TENANTS[:3] for day in days]
    with create_test_daemon_workspace_context(target, registered) as context:
        repo = load_remote_repo(context, "__repository__")
        partition_set = repo.get_partition_set(f"{REFRESH_JOB}_partition_set")
        backfill = PartitionBackfill(
            backfill_id="job-resumed",
            status=BulkActionStatus.REQUESTED,
            from_failure=False,
            tags={},
            backfill_timestamp=0.0,
            partition_set_origin=partition_set.get_remote_origin(),
            partition_names=wanted,
        )
        # The first turn created tenant-001's run, then stopped.
        first = registered.create_run_for_job(
            dg.JobDefinition(graph_def=dg.GraphDefinition(name="noop", node_defs=[])),
            tags={
                "dagster/backfill": backfill.backfill_id,
                RANGE_START_TAG: f"{days[0]}|tenant-001",
                RANGE_END_TAG: f"{days[-1]}|tenant-001",
            },
        )
        try:
            logger = logging.getLogger("test")
            ranges, checkpoint, more = backfill_runs._get_partitions_chunk(
                registered, logger, backfill, 25, partition_set
            )
            assert (checkpoint, more) == (wanted[-1], False)
            assert len(ranges) == 1
            ranges_keys = _keys_in(parts, list(ranges), registered)  # type: ignore[arg-type]
            assert sorted(ranges_keys) == sorted(k for k in wanted if not k.endswith("-001"))
            later = backfill.with_partition_checkpoint(checkpoint)
            assert backfill_runs._get_partitions_chunk(
                registered, logger, later, 25, partition_set
            ) == ([], wanted[-1], False)
        finally:
            registered.delete_run(first.run_id)
