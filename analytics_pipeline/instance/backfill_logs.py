"""Dagster's backfill daemon logs a count and a sample of a large partition subset, not every key.

Every iteration of an asset backfill logs, at INFO, the subsets it considers and requests
("Root assets that have not yet been requested", "Considering the following candidate subset",
"Asset partitions to request"): for a subset that is not one time window, every partition key
of every asset. A backfill of all partitions of the seven tables at 500 tenants x 730 days made
lines of 8.4 MB per asset, 1.59 GB of daemon log in 37 minutes (measured:
docs/PERFORMANCE.md), and the daemon built those strings at every iteration. Here a subset of
more than `MAX_KEYS_SHOWN` keys is logged as its size and its first keys in key order; smaller
ones exactly as Dagster logs them.

Built on a Dagster internal (`asset_backfill._partition_subset_str`, looked up by name when the
daemon logs), pinned with Dagster in pyproject.toml; `install()` is called by
analytics_pipeline/instance/storage.py in every process that loads the project's instance, and
analytics_pipeline_tests/test_backfill_runs.py fails when an upgrade changes the function.
"""

from __future__ import annotations

import hashlib
import heapq
import inspect
from typing import Any

from dagster._core.definitions.partitions.subset.time_window import TimeWindowPartitionsSubset
from dagster._core.execution import asset_backfill as _backfill

MAX_KEYS_SHOWN = 20

# sha256 of the stock function's source, Dagster 1.13.27 (review this module before moving it).
STOCK_SOURCE_SHA256 = "409cbccdabfa6b4160f4af40d98489083275b1d801e90ef6f510212c26851fbd"

_PATCHED = "_partition_subset_str"
_STOCK = getattr(_backfill, _PATCHED)


def stock_source_sha256() -> str:
    """The sha256 of the installed Dagster's stock function, for the pin's guard test."""
    return hashlib.sha256(inspect.getsource(_STOCK).encode()).hexdigest()


def _partition_subset_str(partition_subset: Any, partitions_def: Any) -> str:
    """Dagster's text for a subset, shortened to a count and a sample when it is large."""
    if isinstance(partition_subset, TimeWindowPartitionsSubset) or (
        len(partition_subset) <= MAX_KEYS_SHOWN
    ):
        return str(_STOCK(partition_subset, partitions_def))
    # nsmallest, not sorted: linear in the subset, which the daemon logs three times a turn.
    first = heapq.nsmallest(MAX_KEYS_SHOWN, partition_subset.get_partition_keys())
    return f"{len(partition_subset):,} partitions, the first {len(first)}: {', '.join(first)}, ..."


def install() -> None:
    """Shorten the backfill daemon's subset lines in this process (idempotent)."""
    setattr(_backfill, _PATCHED, _partition_subset_str)


def uninstall() -> None:
    """Restore Dagster's own function (tests compare the two)."""
    setattr(_backfill, _PATCHED, _STOCK)
