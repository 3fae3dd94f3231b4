"""Materializations that an op records for many partitions, handed to the storage in batches.

An asset step's materializations of a range are logged as one batch (Dagster's
`DagsterEventBatchMetadata`), which the event storage writes at once (instance/storage.py). A
materialization an op yields is logged alone: one `store_event`, one INSERT, one tags INSERT,
one asset-key upsert and a new connection for the tag table's existence check, ~20 ms each
(measured: 13,187 of them took 5 minutes). `batched` logs an op's materializations the way an
asset step's are, so the exact-refresh job (assets/exact_refresh.py) stores thousands of them in
the same few statements as a range run.

Each materialization carries the partition's dimension tags (`dagster/partition/tenant`, ...), as
Dagster puts them on an asset step's: what the per-dimension queries of the tag table read.

Built on Dagster internals (`DagsterEvent.asset_materialization`'s `batch_metadata`,
`DagsterEventBatchMetadata`, `generate_event_batch_id`, `get_tags_from_multi_partition_key`),
pinned with Dagster in pyproject.toml;
analytics_pipeline_tests/test_exact_refresh.py checks that an exact run's materializations reach
the storage in batches and are stored exactly as Dagster stores an op's materializations.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster._core.definitions.partitions.utils import get_tags_from_multi_partition_key
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id

# What `partition_materializations` yields (an op yields them on as they are).
LoggedEvent = DagsterEvent


def partition_materializations(
    context: dg.OpExecutionContext,
    asset_key: dg.AssetKey,
    metadata: Mapping[dg.MultiPartitionKey, Mapping[str, Any]],
) -> Iterator[LoggedEvent]:
    """Log a materialization of each partition of `asset_key` with its own `metadata`, as one
    batch; yield the logged events."""
    materializations = [
        dg.AssetMaterialization(
            asset_key=asset_key,
            partition=str(partition),
            metadata=values,
            tags=get_tags_from_multi_partition_key(partition),
        )
        for partition, values in metadata.items()
    ]
    step = context.get_step_execution_context()
    # Dagster leaves this helper unannotated (it returns a str).
    batch_id = generate_event_batch_id()  # type: ignore[no-untyped-call]
    last = len(materializations) - 1
    for i, materialization in enumerate(materializations):
        # Building the event logs it (DagsterEvent.from_step): the batch metadata tells the
        # instance to buffer it until the batch's end or the batch size.
        yield DagsterEvent.asset_materialization(
            step, materialization, DagsterEventBatchMetadata(batch_id, i == last)
        )
