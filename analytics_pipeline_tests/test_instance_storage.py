"""Guards for what the project builds on Dagster internals (analytics_pipeline/instance/).

The bulk event writes, the template serializer and the per-partition metadata path all rely on
Dagster's and dagster-postgres's internals, pinned in pyproject.toml. These tests run the same
real range run on stock dagster-postgres storage and on the project's, and fail when the two
store anything different: that is what a Dagster upgrade that changes the internals would do.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.partitions.context import partition_loading_context
from dagster._core.events import AssetMaterializationPlannedData
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from dagster._serdes import deserialize_value, serialize_value

from analytics_pipeline.instance.partition_metadata import add_partition_metadata
from analytics_pipeline.instance.serialization import serialize_batch
from analytics_pipeline.instance.storage import EVENT_BATCH_SIZE_ENV
from analytics_pipeline.partitions import (
    TenantDay,
    add_tenants,
    range_tags,
    tenant_daily_partitions,
)
from analytics_pipeline_tests.testbed import STOCK_DAGSTER_YAML, TEST_SIZE, truncate_olap

ROOT = Path(__file__).resolve().parents[1]
STOCK = STOCK_DAGSTER_YAML
FIRST = TenantDay("tenant-001", dt.date(2026, 3, 20))
LAST = TenantDay("tenant-003", dt.date(2026, 3, 26))
ASSETS = [
    dg.AssetKey(["analytics", "campaign_analytics"]),
    dg.AssetKey(["analytics", "lead_analytics"]),
]


def _normalized(text: str, run_id: str) -> object:
    """An event's JSON with what differs between two runs of the same work made equal."""

    def walk(value: object, key: str = "") -> object:
        if isinstance(value, dict):
            return {k: walk(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        if key in ("timestamp", "pid") or key == "dagster/data_version":
            return 0
        if key == "value" and isinstance(value, float):
            return 0  # timings (the run summary's `seconds`)
        if isinstance(value, str):
            return value.replace(run_id, "RUN")
        return value

    return walk(json.loads(text))


def _stored(url: str, run_id: str) -> dict[str, list]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "SELECT dagster_event_type, asset_key, partition, step_key, event "
                "FROM event_logs WHERE run_id = :r AND asset_key IS NOT NULL ORDER BY id"
            ),
            {"r": run_id},
        ).all()
        tags = conn.execute(
            sa.text(
                "SELECT t.asset_key, t.key, t.value, e.partition, e.dagster_event_type "
                "FROM asset_event_tags t JOIN event_logs e ON e.id = t.event_id "
                "WHERE e.run_id = :r AND t.key <> 'dagster/data_version' ORDER BY e.id, t.key"
            ),
            {"r": run_id},
        ).all()
        keys = conn.execute(
            sa.text(
                "SELECT asset_key, last_run_id, last_materialization IS NOT NULL "
                "FROM asset_keys ORDER BY asset_key"
            )
        ).all()
    engine.dispose()
    return {
        "events": [(*row[:4], _normalized(row[4], run_id)) for row in events],
        "tags": [tuple(row) for row in tags],
        "asset_keys": [(k, r == run_id, m) for k, r, m in keys],
    }


@pytest.fixture
def run_on(defs, olap, fresh_instance_home):
    """Runs the same range run, on empty OLAP tables, on a fresh instance of a dagster.yaml."""

    def run(yaml: str, name: str) -> tuple[str, str]:
        truncate_olap(olap)
        url, home = fresh_instance_home(yaml, name)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_tenants(instance, TEST_SIZE.tenant_ids())
            result = defs.resolve_job_def("refresh_analytics").execute_in_process(
                instance=instance, tags=range_tags(FIRST, LAST), asset_selection=ASSETS
            )
            assert result.success
        return url, result.run_id

    return run


def _planned_partitions(events: list) -> dict[str, set[str]]:
    """Asset key -> the partitions its planned events name, per-partition or as a subset."""
    planned: dict[str, set[str]] = {}
    for kind, asset_key, partition, _step, event in events:
        if kind != "ASSET_MATERIALIZATION_PLANNED":
            continue
        subset = event["dagster_event"]["event_specific_data"]["partitions_subset"]
        keys = {partition} if subset is None else set(subset["subset"]["__set__"])
        planned.setdefault(asset_key, set()).update(keys)
    return planned


def test_bulk_storage_stores_exactly_what_stock_storage_stores(run_on, monkeypatch):
    """Every asset event, tag row and asset-key row of a real range run is the same on the
    project's bulk-writing storage as on dagster-postgres's own, one event at a time; but for
    the planned events, which are one per asset naming the same partitions as a subset (the
    stock storage writes one per partition). Fails if Dagster stops honouring the storage's
    `supports_partition_subset_in_asset_materialization_planned_events`."""
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    stock = _stored(*run_on(STOCK, "stock"))
    ours = _stored(*run_on((ROOT / "dagster.yaml").read_text(), "pooled"))
    partitions = 3 * 7

    def planned(events: list) -> list:
        return [e for e in events if e[0] == "ASSET_MATERIALIZATION_PLANNED"]

    assert len(planned(stock["events"])) == len(ASSETS) * partitions
    assert len(planned(ours["events"])) == len(ASSETS), "one planned event per asset"
    assert all(e[2] is None for e in planned(ours["events"]))
    assert _planned_partitions(ours["events"]) == _planned_partitions(stock["events"])
    assert len(_planned_partitions(ours["events"])[ASSETS[0].to_string()]) == partitions

    def rest(events: list) -> list:
        return [e for e in events if e[0] != "ASSET_MATERIALIZATION_PLANNED"]

    assert rest(stock["events"]) == rest(ours["events"])
    assert stock["tags"] == ours["tags"]
    assert stock["asset_keys"] == ours["asset_keys"]


def _status(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> dict[str, set[str]]:
    """The partition status the UI's partitions matrix shows, from Dagster's status cache."""
    partitions = tenant_daily_partitions()
    value = get_and_update_asset_status_cache_value(
        instance, asset_key, partitions, dynamic_partitions_loader=instance
    )
    assert value is not None
    with partition_loading_context(None, instance):
        subsets = {
            "materialized": value.deserialize_materialized_partition_subsets,
            "failed": value.deserialize_failed_partition_subsets,
            "in progress": value.deserialize_in_progress_partition_subsets,
        }
        return {name: set(get(partitions).get_partition_keys()) for name, get in subsets.items()}


@pytest.fixture
def statuses_on(defs, olap, fresh_instance_home):
    """The partition status after each step of a run's life, on a fresh instance of a yaml:
    planned (run not started), that run failed, then a smaller range run that succeeds."""

    def statuses(yaml: str, name: str) -> list[dict[str, set[str]]]:
        truncate_olap(olap)
        _, home = fresh_instance_home(yaml, name)
        job = defs.resolve_job_def("refresh_analytics")
        seen = []
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_tenants(instance, TEST_SIZE.tenant_ids())
            run = instance.create_run_for_job(job, tags=range_tags(FIRST, LAST))
            seen.append(_status(instance, ASSETS[0]))
            instance.report_run_failed(run)
            seen.append(_status(instance, ASSETS[0]))
            result = job.execute_in_process(
                instance=instance, tags=range_tags(FIRST, SMALLER_LAST), asset_selection=ASSETS
            )
            assert result.success
            seen.append(_status(instance, ASSETS[0]))
        return seen

    return statuses


SMALLER_LAST = TenantDay("tenant-002", dt.date(2026, 3, 22))


def test_partition_status_with_subset_planned_events_is_what_stock_storage_shows(statuses_on):
    """With one planned event per asset (a subset), the partitions matrix must still show the
    run's partitions in progress while it runs, failed when it failed, and materialized once a
    later run wrote them: exactly what stock storage (one planned event per partition) shows.
    Dagster's own reading of the subset form loses failed partitions; this fails if the
    project's storage (instance/planned_events.py) stops making up for it."""
    stock = statuses_on(STOCK, "status_stock")
    ours = statuses_on((ROOT / "dagster.yaml").read_text(), "status_pooled")
    planned, failed, rerun = ours
    assert len(planned["in progress"]) == 3 * 7 and not planned["failed"]
    assert len(failed["failed"]) == 3 * 7 and not failed["in progress"]
    assert len(rerun["materialized"]) == 2 * 3
    assert rerun["failed"] == failed["failed"] - rerun["materialized"]
    assert ours == stock


def test_template_serializer_reproduces_dagster_byte_for_byte(run_on, monkeypatch):
    """The template must give exactly serialize_value's text, for events that fit it and for
    events that do not (which it must hand to Dagster's serializer)."""
    url, run_id = run_on((ROOT / "dagster.yaml").read_text(), "serializer")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        texts = (
            conn.execute(
                sa.text("SELECT event FROM event_logs WHERE run_id = :r ORDER BY id"), {"r": run_id}
            )
            .scalars()
            .all()
        )
    engine.dispose()
    events = [deserialize_value(t) for t in texts]
    by_type: dict[str, list] = {}
    for event in events:
        if event.dagster_event is not None:
            by_type.setdefault(event.dagster_event.event_type_value, []).append(event)
    # The run stores one planned event per asset (a subset); per-partition planned events,
    # as a storage without subsets gets them, are made from it for the serializer.
    subset_planned = by_type["ASSET_MATERIALIZATION_PLANNED"][0]
    subset_data = subset_planned.dagster_event.event_specific_data
    by_type["per-partition planned"] = [
        subset_planned._replace(
            dagster_event=subset_planned.dagster_event._replace(
                event_specific_data=AssetMaterializationPlannedData(
                    subset_data.asset_key, partition=key
                )
            )
        )
        for key in sorted(subset_data.partitions_subset.get_partition_keys())
    ]
    for kind in ("ASSET_MATERIALIZATION", "per-partition planned"):
        batch = by_type[kind]
        assert len(batch) >= 21
        assert serialize_batch(batch) == [serialize_value(e) for e in batch]
    # A batch mixing in events that do not fit the first one's template (other metadata
    # types, other tags, other event types) still comes out exactly as Dagster writes it.
    mat = by_type["ASSET_MATERIALIZATION"][0]
    data = mat.dagster_event.event_specific_data
    odd = mat._replace(
        dagster_event=mat.dagster_event._replace(
            event_specific_data=data._replace(
                materialization=data.materialization._replace(
                    metadata={"note": dg.MetadataValue.text("x")}, tags={"a": "b"}
                )
            )
        )
    )
    mixed = [*by_type["ASSET_MATERIALIZATION"][:5], odd, *by_type["STEP_START"], mat]
    assert serialize_batch(mixed) == [serialize_value(e) for e in mixed]


def test_bulk_partition_metadata_equals_the_public_api():
    """add_partition_metadata must put on each partition's materialization exactly what
    Dagster's public add_asset_metadata(partition_key=...) puts there."""
    parts = dg.StaticPartitionsDefinition(["a", "b", "c", "d"])

    def figures(key: str) -> dict[str, dg.MetadataValue]:
        return {"dagster/row_count": dg.MetadataValue.int(ord(key)), "k": dg.MetadataValue.int(1)}

    @dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
    def public(context) -> dg.MaterializeResult:
        for key in context.partition_keys:
            context.add_asset_metadata(figures(key), partition_key=key)
        return dg.MaterializeResult()

    @dg.asset(partitions_def=parts, backfill_policy=dg.BackfillPolicy.single_run())
    def bulk(context) -> dg.MaterializeResult:
        add_partition_metadata(
            context, context.asset_key, {key: figures(key) for key in context.partition_keys}
        )
        return dg.MaterializeResult()

    def materialize(asset: dg.AssetsDefinition) -> dict[str, dict]:
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                [asset],
                instance=instance,
                tags={
                    "dagster/asset_partition_range_start": "a",
                    "dagster/asset_partition_range_end": "d",
                },
            )
            mats = result.asset_materializations_for_node(asset.op.name)
        return {m.partition: dict(m.metadata) for m in mats}

    expected = {key: figures(key) for key in "abcd"}
    assert materialize(public) == expected
    assert materialize(bulk) == expected
