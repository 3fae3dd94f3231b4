"""Backfills of (tenant, date) partitions as a few rectangular runs, not one run per tenant.

A backfill launched from the UI (or any asset backfill, or a declarative-automation request)
becomes runs in `_build_run_requests_with_backfill_policy`. For a multi-partitioned asset Dagster
asks the subset for its key ranges, and `DefaultPartitionsSubset.get_partition_key_ranges` holds
one dimension fixed per range: all partitions of 500 tenants x 730 days become 500 runs (one per
tenant), launched one by one by the daemon, each with its own process start, code load and run
bookkeeping: hours for seven tables, for minutes of SQL.

Yet a `PartitionKeyRange` over a `MultiPartitionsDefinition` already means a rectangle: its
`get_partition_keys_in_range` is the product of each dimension's range, which is how
`analytics-pipeline backfill` runs a tenants x days block as one run. Here the requested keys
are covered exactly by rectangles instead: tenants that want the same days are grouped, each
group's tenants and days are cut into contiguous stretches (in the order of their dimension),
and every stretch pair is one range. All partitions are one rectangle; a hole costs a few more.
The asset's `BackfillPolicy` still bounds a run: `multi_run(max_partitions_per_run=n)` cuts each
rectangle across its longer side so that no run covers more than n partitions (the rollups
declare 50,000, as `analytics-pipeline backfill` uses), and `single_run()` leaves it whole.

Nothing else changes: the runs are ordinary range runs (tags `dagster/asset_partition_range_*`),
the backfill tracks them as its own, and its page shows the partitions as they materialize.
Anything that is not a two-dimensional `MultiPartitionsDefinition` takes Dagster's own path.

A job backfill (the job's Partitions tab in the UI: "Launch backfill" of `refresh_analytics`)
takes another path, `job_backfill._get_partitions_chunk`, with the same split by tenant and a
checkpoint in the list of keys: 500 runs, 25 at a time. For a two-dimensional job with a backfill
policy that allows ranges, its keys not yet in a run of the backfill become the same rectangles,
all at once (8 runs for all partitions at 500 x 730); the checkpoint is then the last key, so a
later turn of the daemon finds nothing left and waits for the runs, as Dagster's does after its
last chunk. Dagster gives each range run of a job backfill the tags of the range's first
partition, its dimension tags (`dagster/partition/tenant`, `.../date`) included, and a run with
those refreshes that one partition only (every other partition of the range would stay
missing; Dagster issue #28861): `create_backfill_run` here leaves them off range runs.

Built on Dagster internals (the three module functions above, looked up by name on every call),
pinned with Dagster in pyproject.toml. `install()` puts them in place in every process that
loads the project's instance (analytics_pipeline/instance/storage.py calls it): the daemon, where
backfills are turned into runs, and the webserver. analytics_pipeline_tests/test_backfill_runs.py
fails when an upgrade changes the stock functions (their sources are pinned by hash) or when the
runs stop covering exactly the requested partitions; test_daemon.py runs both kinds of backfill
of every partition on the real daemon.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeGuard

import dagster as dg
from dagster._core.definitions import automation_tick_evaluation_context as _tick
from dagster._core.definitions.backfill_policy import BackfillPolicyType
from dagster._core.execution import job_backfill as _job
from dagster._core.execution.backfill import PartitionBackfill
from dagster._core.storage.tags import (
    BACKFILL_ID_TAG,
    MULTIDIMENSIONAL_PARTITION_PREFIX,
    PARTITION_NAME_TAG,
)

from analytics_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, consecutive_spans

# sha256 of the stock functions' sources, Dagster 1.13.27: a different one means an upgrade
# changed how backfills become runs; review this module before moving the pin.
STOCK_SOURCE_SHA256 = "b586ec03ce74ad8247cb959a707e2283ae4bcbd52b975a500c13f0ae6bfa4553"
JOB_STOCK_SOURCE_SHA256 = "d3fecdd1fed90427c1e4360a349f375b4b7ed989bdd69be1b67e53c6eb06e737"

_PATCHED = "_build_run_requests_with_backfill_policy"
_STOCK = getattr(_tick, _PATCHED)
_JOB_PATCHED = "_get_partitions_chunk"
_JOB_STOCK = getattr(_job, _JOB_PATCHED)
_RUN_PATCHED = "create_backfill_run"
_RUN_STOCK = getattr(_job, _RUN_PATCHED)


def stock_source_sha256() -> str:
    """The sha256 of the installed Dagster's stock function, for the pin's guard test."""
    return hashlib.sha256(inspect.getsource(_STOCK).encode()).hexdigest()


def job_stock_source_sha256() -> str:
    """The sha256 of the installed Dagster's stock job-backfill chunking and run creation, for
    the guard test."""
    sources = inspect.getsource(_JOB_STOCK) + inspect.getsource(_RUN_STOCK)
    return hashlib.sha256(sources.encode()).hexdigest()


def _two_dimensional(
    partitions_def: dg.PartitionsDefinition | None,
) -> TypeGuard[dg.MultiPartitionsDefinition]:
    """Whether the rectangles apply: anything else takes Dagster's own path."""
    return (
        isinstance(partitions_def, dg.MultiPartitionsDefinition)
        and len(partitions_def.partitions_defs) == 2
    )


def _chunks(first: int, last: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size - 1, last)) for s in range(first, last + 1, size)]


def covering_ranges(
    partitions_def: dg.MultiPartitionsDefinition,
    partition_keys: Iterable[str],
    max_partitions: int | None = None,
    dynamic_partitions_store: Any = None,
) -> list[dg.PartitionKeyRange]:
    """Disjoint rectangular ranges whose keys are exactly `partition_keys`, each of at most
    `max_partitions` keys (None: no bound), earliest days first.

    Keys must be keys of `partitions_def` (Dagster's backfill checks them before this point).
    """
    if max_partitions is not None and max_partitions < 1:
        raise ValueError(f"max_partitions must be at least 1, not {max_partitions}")
    dims = partitions_def.partitions_defs
    if len(dims) != 2:
        raise ValueError(f"covering_ranges needs two dimensions, not {len(dims)}")
    with dg.partition_loading_context(dynamic_partitions_store=dynamic_partitions_store):
        ordered = [list(d.partitions_def.get_partition_keys()) for d in dims]
    position = [{key: i for i, key in enumerate(keys)} for keys in ordered]
    outer, inner = dims[0].name, dims[1].name
    wanted: dict[int, set[int]] = {}
    for key in partition_keys:
        parts = partitions_def.get_partition_key_from_str(key).keys_by_dimension
        wanted.setdefault(position[0][parts[outer]], set()).add(position[1][parts[inner]])
    # Outer keys that want the same inner keys share rectangles.
    groups: dict[frozenset[int], list[int]] = {}
    for o, wanted_inner in wanted.items():
        groups.setdefault(frozenset(wanted_inner), []).append(o)
    # At 500 tenants x 730 days a bounded run keeps every tenant and covers max_partitions // 500
    # days, as `analytics-pipeline backfill` cuts it (_bounded cuts the longer side).
    rectangles: list[tuple[tuple[int, int], tuple[int, int]]] = []
    for inners, outers in groups.items():
        for o_first, o_last in consecutive_spans(outers):
            for i_first, i_last in consecutive_spans(inners):
                rectangles.extend(_bounded((o_first, o_last), (i_first, i_last), max_partitions))
    time_dim = 0 if isinstance(dims[0].partitions_def, dg.TimeWindowPartitionsDefinition) else 1
    rectangles.sort(key=lambda r: (r[time_dim], r[1 - time_dim]))
    return [
        dg.PartitionKeyRange(
            start=dg.MultiPartitionKey({outer: ordered[0][o[0]], inner: ordered[1][i[0]]}),
            end=dg.MultiPartitionKey({outer: ordered[0][o[1]], inner: ordered[1][i[1]]}),
        )
        for o, i in rectangles
    ]


def _bounded(
    outer: tuple[int, int], inner: tuple[int, int], max_partitions: int | None
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The rectangle outer x inner cut into pieces of at most max_partitions keys."""
    o_len, i_len = outer[1] - outer[0] + 1, inner[1] - inner[0] + 1
    if max_partitions is None or o_len * i_len <= max_partitions:
        return [(outer, inner)]
    if o_len < i_len:  # the same cut with the sides swapped
        return [(o, i) for i, o in _bounded(inner, outer, max_partitions)]
    # Cut the longer (outer) side; keep as much of the inner side as fits in one piece.
    width = min(i_len, max_partitions)
    size = max(1, max_partitions // width)
    return [(o, i) for i in _chunks(*inner, width) for o in _chunks(*outer, size)]


def _build_run_requests_with_backfill_policy(
    asset_keys: Sequence[dg.AssetKey],
    asset_check_keys: Sequence[dg.AssetCheckKey],
    backfill_policy: dg.BackfillPolicy,
    partition_keys: frozenset[str],
    partitions_def: dg.PartitionsDefinition,
    tags: dict[str, Any],
    dynamic_partitions_store: Any,
) -> Sequence[dg.RunRequest]:
    """Dagster's function, but multi-partitioned keys become rectangles (module docstring)."""
    if not _two_dimensional(partitions_def):
        return _STOCK(  # type: ignore[no-any-return]
            asset_keys,
            asset_check_keys,
            backfill_policy,
            partition_keys,
            partitions_def,
            tags,
            dynamic_partitions_store,
        )
    bound = (
        None
        if backfill_policy.policy_type == BackfillPolicyType.SINGLE_RUN
        else backfill_policy.max_partitions_per_run
    )
    return [
        _tick._build_run_request_for_partition_key_range(
            asset_keys=list(asset_keys),
            asset_check_keys=list(asset_check_keys),
            partition_range_start=r.start,
            partition_range_end=r.end,
            run_tags=tags,
        )
        for r in covering_ranges(partitions_def, partition_keys, bound, dynamic_partitions_store)
    ]


def _get_partitions_chunk(
    instance: dg.DagsterInstance,
    logger: Any,
    backfill_job: PartitionBackfill,
    chunk_size: int,
    partition_set: Any,
) -> tuple[Sequence[str | dg.PartitionKeyRange], str, bool]:
    """Dagster's function, but a job backfill's multi-partitioned keys become rectangles, all
    at once (module docstring): (what to submit, the checkpoint, whether more is left)."""
    partitions_def = (
        partition_set.get_partitions_definition()
        if partition_set.has_partitions_definition()
        else None
    )
    policy: dg.BackfillPolicy | None = partition_set.backfill_policy
    if policy is None or policy.max_partitions_per_run == 1 or not _two_dimensional(partitions_def):
        stock: tuple[Sequence[str | dg.PartitionKeyRange], str, bool] = _JOB_STOCK(
            instance, logger, backfill_job, chunk_size, partition_set
        )
        return stock
    names = list(backfill_job.partition_names or [])
    last = names[-1] if names else ""
    if not names or backfill_job.last_submitted_partition_name == last:
        return [], last, False  # every key is in a run already: the daemon waits for them
    # What runs of this backfill hold already (a turn of the daemon that stopped half-way).
    submitted: set[str] = set()
    runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_ID_TAG: backfill_job.backfill_id}))
    with dg.partition_loading_context(dynamic_partitions_store=instance):
        for run in runs:
            start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
            if start and end and PARTITION_NAME_TAG not in run.tags:
                key_range = dg.PartitionKeyRange(start=start, end=end)
                submitted.update(partitions_def.get_partition_keys_in_range(key_range))
            elif PARTITION_NAME_TAG in run.tags:
                submitted.add(run.tags[PARTITION_NAME_TAG])
    left = [n for n in names if n not in submitted]
    bound = (
        None
        if policy.policy_type == BackfillPolicyType.SINGLE_RUN
        else policy.max_partitions_per_run
    )
    return covering_ranges(partitions_def, left, bound, instance), last, False


def create_backfill_run(
    request_context: Any,
    instance: dg.DagsterInstance,
    code_location: Any,
    remote_job: Any,
    partition_set: Any,
    backfill_job: PartitionBackfill,
    key_or_range: str | dg.PartitionKeyRange,
    run_tags: Mapping[str, str],
    run_config: Mapping[str, Any],
) -> Any:
    """Dagster's function, but a range run carries no dimension tags of one partition."""
    if isinstance(key_or_range, dg.PartitionKeyRange):
        prefix = MULTIDIMENSIONAL_PARTITION_PREFIX
        run_tags = {k: v for k, v in run_tags.items() if not k.startswith(prefix)}
    return _RUN_STOCK(
        request_context,
        instance,
        code_location,
        remote_job,
        partition_set,
        backfill_job,
        key_or_range,
        run_tags,
        run_config,
    )


def install() -> None:
    """Put the rectangular backfill runs in place in this process (idempotent)."""
    setattr(_tick, _PATCHED, _build_run_requests_with_backfill_policy)
    setattr(_job, _JOB_PATCHED, _get_partitions_chunk)
    setattr(_job, _RUN_PATCHED, create_backfill_run)


def uninstall() -> None:
    """Restore Dagster's own functions (tests compare the two)."""
    setattr(_tick, _PATCHED, _STOCK)
    setattr(_job, _JOB_PATCHED, _JOB_STOCK)
    setattr(_job, _RUN_PATCHED, _RUN_STOCK)
