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
from dagster._serdes import deserialize_value, serialize_value

from analytics_pipeline.instance.partition_metadata import add_partition_metadata
from analytics_pipeline.instance.serialization import serialize_batch
from analytics_pipeline.instance.storage import EVENT_BATCH_SIZE_ENV
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline_tests.testbed import TEST_SIZE, Databases, truncate_olap

ROOT = Path(__file__).resolve().parents[1]
STOCK = """
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
telemetry:
  enabled: false
"""
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
def run_on(defs, olap, databases: Databases, tmp_path: Path, monkeypatch):
    """Runs the same range run, on empty OLAP tables, on a fresh instance of a dagster.yaml."""

    def run(yaml: str, name: str) -> tuple[str, str]:
        truncate_olap(olap)
        url = databases.create(name)
        monkeypatch.setenv(
            "DAGSTER_PG_URL",
            sa.make_url(url)
            .set(drivername="postgresql+psycopg2")
            .render_as_string(hide_password=False),
        )
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml)
        with dg.DagsterInstance.from_config(str(home)) as instance:
            add_tenants(instance, TEST_SIZE.tenant_ids())
            result = defs.resolve_job_def("refresh_analytics").execute_in_process(
                instance=instance, tags=range_tags(FIRST, LAST), asset_selection=ASSETS
            )
            assert result.success
        return url, result.run_id

    return run


def test_bulk_storage_stores_exactly_what_stock_storage_stores(run_on, monkeypatch):
    """Every asset event, tag row and asset-key row of a real range run is the same on the
    project's bulk-writing storage as on dagster-postgres's own, one event at a time."""
    monkeypatch.delenv(EVENT_BATCH_SIZE_ENV, raising=False)
    stock = _stored(*run_on(STOCK, "stock"))
    ours = _stored(*run_on((ROOT / "dagster.yaml").read_text(), "pooled"))
    partitions = 3 * 7
    planned = [e for e in ours["events"] if e[0] == "ASSET_MATERIALIZATION_PLANNED"]
    assert len(planned) == len(ASSETS) * partitions, "one planned event per (partition, asset)"
    assert stock["events"] == ours["events"]
    assert stock["tags"] == ours["tags"]
    assert stock["asset_keys"] == ours["asset_keys"]


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
    for kind in ("ASSET_MATERIALIZATION", "ASSET_MATERIALIZATION_PLANNED"):
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
