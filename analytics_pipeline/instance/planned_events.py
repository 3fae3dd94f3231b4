"""One planned materialization per asset and run, with the run's partitions as a subset.

When a run is created Dagster records, for each asset it will materialize, that it intends to:
by default one ASSET_MATERIALIZATION_PLANNED event per partition (a range run over 15,000
partitions stores 15,000 of them, ~1.3 KB each with their index entries, and costs ~0.4 ms a
partition to write). A storage that says it supports it gets ONE planned event per asset instead,
carrying the run's partitions as a `partitions_subset` (Dagster's
`supports_partition_subset_in_asset_materialization_planned_events`; what Dagster+ does).

What dagster-postgres does not do is read those events back: the partitions' "in progress" and
"failed" status (the UI's partitions matrix, via the asset status cache) comes from
`get_latest_asset_partition_materialization_attempts_without_materializations`, which only looks
at planned events with a partition of their own, which is why Dagster documents that the subset
form loses failed partitions. `incomplete_attempts` below adds the subset events to that answer,
partition by partition, by the same rule the stock query applies per partition: a partition's
latest planned event counts while no materialization came after it.

An op that materializes partitions of assets (the exact-refresh job, assets/exact_refresh.py)
gets no planned events from Dagster, which plans only the assets a run selects:
`plan_materializations` records them from the op, as Dagster would for an asset run.

Built on Dagster internals (the property above, the event-log table and the stock query's
semantics, `AssetMaterializationPlannedData`), pinned with Dagster in pyproject.toml;
analytics_pipeline_tests/test_instance_storage.py checks that Dagster still emits one subset event
per asset, and that in-progress, failed and materialized partitions come out exactly as on stock
storage; test_exact_refresh.py that an exact run's partitions show failed when it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import (
    AssetMaterializationPlannedData,
    DagsterEvent,
    DagsterEventBatchMetadata,
    DagsterEventType,
    generate_event_batch_id,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._serdes import deserialize_value

if TYPE_CHECKING:
    from dagster_postgres.event_log.event_log import PostgresEventLogStorage

_PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED.value
_MATERIALIZED = DagsterEventType.ASSET_MATERIALIZATION.value


def _subset_events(
    storage: PostgresEventLogStorage, asset_key: dg.AssetKey, after_storage_id: int | None
) -> list[tuple[str, int, list[str]]]:
    """(run id, event id, partition keys) of the asset's subset planned events, oldest first."""
    table = SqlEventLogStorageTable
    query = sa.select(table.c.run_id, table.c.id, table.c.event).where(
        table.c.asset_key == asset_key.to_string(),
        table.c.dagster_event_type == _PLANNED,
        table.c.partition.is_(None),
    )
    if after_storage_id is not None:
        query = query.where(table.c.id > after_storage_id)
    # Events from before a wipe of the asset do not count, as in every stock asset query.
    query = storage._add_assets_wipe_filter_to_query(
        query, storage._get_assets_details([asset_key]), [asset_key]
    )
    with storage.index_connection() as conn:
        rows = conn.execute(query.order_by(table.c.id)).all()
    found = []
    for run_id, event_id, text in rows:
        event = deserialize_value(text, EventLogEntry)
        subset = event.get_dagster_event().partitions_subset
        if subset is not None:
            found.append((str(run_id), int(event_id), list(subset.get_partition_keys())))
    return found


def _latest_materializations(
    storage: PostgresEventLogStorage, asset_key: dg.AssetKey, after_storage_id: int | None
) -> dict[str, int]:
    """Each partition's latest materialization event id after the cursor."""
    latest = storage._latest_event_ids_by_partition_subquery(
        asset_key, [DagsterEventType.ASSET_MATERIALIZATION], after_cursor=after_storage_id
    )
    with storage.index_connection() as conn:
        rows = conn.execute(sa.select(latest.c.partition, latest.c.id)).all()
    return {str(partition): int(event_id) for partition, event_id in rows}


def incomplete_attempts(
    storage: PostgresEventLogStorage,
    asset_key: dg.AssetKey,
    after_storage_id: int | None,
    per_partition: Mapping[str, tuple[str, int]],
) -> dict[str, tuple[str, int]]:
    """The stock answer (`per_partition`) with the subset planned events added.

    partition -> (run id, planned event id) for every partition whose latest planned event,
    per-partition or subset, has no materialization after it.
    """
    attempts = dict(per_partition)
    subsets = _subset_events(storage, asset_key, after_storage_id)
    if not subsets:
        return attempts
    materialized = _latest_materializations(storage, asset_key, after_storage_id)
    for run_id, event_id, keys in subsets:
        for key in keys:
            if materialized.get(key, 0) > event_id:
                continue  # materialized after this plan
            current = attempts.get(key)
            if current is None or current[1] < event_id:
                attempts[key] = (run_id, event_id)
    return attempts


def plan_materializations(
    context: dg.OpExecutionContext,
    asset_key: dg.AssetKey,
    partitions_def: dg.PartitionsDefinition,
    partition_keys: Sequence[str],
) -> None:
    """Record that this op's run will materialize `partition_keys` of `asset_key`, as Dagster
    records it for an asset run when the run is created: one planned event with the keys as a
    subset where the storage reads those (this project's), else one per key, in a batch. The
    partitions then show "in progress" until each is materialized, and "failed" if the run ends
    first."""
    step = context.get_step_execution_context()
    storage = context.instance.event_log_storage
    if storage.supports_partition_subset_in_asset_materialization_planned_events:
        planned = [
            AssetMaterializationPlannedData(
                asset_key,
                partition=None,
                partitions_subset=partitions_def.subset_with_partition_keys(partition_keys),
            )
        ]
    else:
        planned = [
            AssetMaterializationPlannedData(asset_key, partition=key, partitions_subset=None)
            for key in partition_keys
        ]
    # Dagster leaves this helper unannotated (it returns a str).
    batch_id = generate_event_batch_id()  # type: ignore[no-untyped-call]
    for i, data in enumerate(planned):
        event = DagsterEvent.build_asset_materialization_planned_event(
            step.job_name, step.step.key, data
        )
        context.instance.report_dagster_event(
            event,
            context.run_id,
            logging.DEBUG,
            batch_metadata=DagsterEventBatchMetadata(batch_id, i == len(planned) - 1),
        )
