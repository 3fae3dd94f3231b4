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

Built on a Dagster internal (the module function above, looked up by name on every call),
pinned with Dagster in pyproject.toml. `install()` puts it in place in every process that loads
the project's instance (analytics_pipeline/instance/storage.py calls it): the daemon, where
backfills are turned into runs, and the webserver. analytics_pipeline_tests/test_backfill_runs.py
fails when an upgrade changes the stock function (its source is pinned by hash) or when the runs
stop covering exactly the requested partitions.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg
from dagster._core.definitions import automation_tick_evaluation_context as _tick
from dagster._core.definitions.backfill_policy import BackfillPolicyType

# sha256 of the stock function's source, Dagster 1.13.27: a different one means an upgrade
# changed how backfills become runs; review this module before moving the pin.
STOCK_SOURCE_SHA256 = "b586ec03ce74ad8247cb959a707e2283ae4bcbd52b975a500c13f0ae6bfa4553"

_PATCHED = "_build_run_requests_with_backfill_policy"
_STOCK = getattr(_tick, _PATCHED)


def stock_source_sha256() -> str:
    """The sha256 of the installed Dagster's stock function, for the pin's guard test."""
    return hashlib.sha256(inspect.getsource(_STOCK).encode()).hexdigest()


def _stretches(indices: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted indices cut into maximal runs of consecutive ones, as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


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
        for o_first, o_last in _stretches(outers):
            for i_first, i_last in _stretches(inners):
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
    if not (
        isinstance(partitions_def, dg.MultiPartitionsDefinition)
        and len(partitions_def.partitions_defs) == 2
    ):
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


def install() -> None:
    """Put the rectangular backfill runs in place in this process (idempotent)."""
    setattr(_tick, _PATCHED, _build_run_requests_with_backfill_policy)


def uninstall() -> None:
    """Restore Dagster's own function (tests compare the two)."""
    setattr(_tick, _PATCHED, _STOCK)
