"""Per-partition materialization metadata for a step over many partitions, attached at once.

Dagster's public way is `context.add_asset_metadata(..., partition_key=key)`, once per
partition. Each call lists every partition key of the run's range to validate the one given and
copies the whole accumulated mapping, so a run over n partitions pays O(n^2): minutes at 15,000
partitions, hours at 365,000. This module puts the same entries into the same accumulator in one
step, after the caller has checked the keys against `context.partition_keys`.

Built on Dagster internals (`StepExecutionContext._metadata_accumulator`,
`OutputMetadataAccumulator`, `AssetMetadataHandle`), pinned with Dagster in pyproject.toml.
Guarded by analytics_pipeline_tests/test_instance_storage.py, which checks that metadata set here
is what Dagster puts on each partition's materialization, exactly as the public call does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster._core.execution.context.metadata_logging import (
    AssetMetadataHandle,
    OutputMetadataAccumulator,
)


def add_partition_metadata(
    context: dg.AssetExecutionContext,
    asset_key: dg.AssetKey,
    by_partition: Mapping[str, Mapping[str, Any]],
) -> None:
    """Attach `by_partition[key]` to the materialization of partition `key` of `asset_key`."""
    step = context.get_step_execution_context()
    accumulated = step._metadata_accumulator
    merged: dict[Any, Mapping[str, Any]] = dict(accumulated.per_output_metadata)
    for key, metadata in by_partition.items():
        handle = AssetMetadataHandle(asset_key=asset_key, partition_key=key)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)
