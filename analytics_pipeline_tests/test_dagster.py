"""The Dagster definitions and real runs through them.

Why: users work through Dagster: the definitions must load with lineage from the OLTP tables, and
a run (one partition, or a range) must compute exactly the keys Dagster hands it, with the
instance itself stored in PostgreSQL as dagster.yaml configures it.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from dagster_postgres.run_storage import PostgresRunStorage

from analytics_pipeline.partitions import TenantDay, add_tenants, parse_partition_key, range_tags
from analytics_pipeline_tests.conftest import TEST_SIZE

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = dg.AssetKey(["analytics", "campaign_analytics"])


def _olap_partitions(url: str) -> set[tuple[str, dt.date]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT DISTINCT tenant_id, date FROM analytics.campaign_analytics")
        ).all()
    engine.dispose()
    return {tuple(r) for r in rows}


def _olap_rows_by_partition(url: str) -> dict[tuple[str, dt.date], int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT tenant_id, date, count(*) FROM analytics.campaign_analytics GROUP BY 1, 2"
            )
        ).all()
    engine.dispose()
    return {(t, d): n for t, d, n in rows}


def test_definitions_load_with_lineage_and_docs(defs):
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    node = graph.get(CAMPAIGN)
    assert node.parent_keys == {dg.AssetKey(["oltp", "emails"])}
    assert node.partitions_def is not None
    spec = defs.resolve_assets_def(CAMPAIGN).specs_by_key[CAMPAIGN]
    assert "Daily email outcomes per campaign" in spec.description
    columns = {c.name: c for c in spec.metadata["dagster/column_schema"].columns}
    assert list(columns)[:3] == ["tenant_id", "date", "campaign_id"]
    assert "queued emails never count" in columns["sent"].description
    for key in graph.get_all_asset_keys():
        assert graph.get(key).description, f"{key} has no description for the UI"
    from analytics_pipeline.rollups.tables import REGISTRY

    for rollup in REGISTRY:
        node = graph.get(dg.AssetKey(["analytics", rollup.name]))
        assert node.parent_keys == {dg.AssetKey(["oltp", t.name]) for t in rollup.sources}
        assert node.group_name == rollup.group
        checks = {k.name for k in defs.resolve_assets_def(node.key).check_keys}
        assert checks == {"invariants", "reconciles_with_oltp"}
    for key in graph.get_all_asset_keys():
        assert graph.get(key).owners == ["team:data-platform"], f"{key} has no owner in the UI"
    assert defs.resolve_job_def("refresh_analytics") is not None


def test_one_partition_run(defs, shared_url):
    with dg.instance_for_test() as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        key = TenantDay("tenant-003", dt.date(2026, 3, 25)).partition_key()
        result = defs.resolve_job_def("refresh_analytics").execute_in_process(
            instance=instance, partition_key=str(key)
        )
        assert result.success
        mats = result.asset_materializations_for_node("analytics__campaign_analytics")
        assert [m.partition for m in mats] == [str(key)]
        assert mats[0].metadata["dagster/row_count"].value > 0
        from analytics_pipeline.rollups.tables import REGISTRY

        checks = result.get_asset_check_evaluations()
        assert {(c.asset_key.path[-1], c.check_name) for c in checks} == {
            (r.name, check) for r in REGISTRY for check in ("invariants", "reconciles_with_oltp")
        }
        assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    assert _olap_partitions(shared_url) == {("tenant-003", dt.date(2026, 3, 25))}


def test_range_run_on_postgres_backed_instance(defs, shared_url, databases, tmp_path, monkeypatch):
    """dagster.yaml as shipped, pointed at PostgreSQL: a range run covers its rectangle."""
    dagster_db = sa.make_url(databases.create("dagster")).set(drivername="postgresql+psycopg2")
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_db.render_as_string(hide_password=False))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert type(instance.event_log_storage).__name__ == "PooledPostgresEventLogStorage"
        # On the database of DAGSTER_PG_URL, not the embedded fallback.
        assert sa.make_url(instance.run_storage.postgres_url).database == dagster_db.database
        add_tenants(instance, TEST_SIZE.tenant_ids())
        first = TenantDay("tenant-001", dt.date(2026, 3, 20))
        last = TenantDay("tenant-002", dt.date(2026, 3, 24))
        result = defs.resolve_job_def("refresh_analytics").execute_in_process(
            instance=instance, tags=range_tags(first, last)
        )
        assert result.success
        expected = {
            (t, dt.date(2026, 3, d)) for t in ("tenant-001", "tenant-002") for d in range(20, 25)
        }
        assert _olap_partitions(shared_url) == expected
        done = instance.get_materialized_partitions(CAMPAIGN)
        assert set(done) == {str(TenantDay(t, d).partition_key()) for t, d in expected}
        # Each partition's materialization carries that partition's own figures, and only
        # them (small); what concerns the whole run is recorded once, as an observation.
        mats = result.asset_materializations_for_node("analytics__campaign_analytics")
        rows = _olap_rows_by_partition(shared_url)
        assert len(mats) == len(expected)
        for mat in mats:
            part = parse_partition_key(mat.partition)
            assert mat.metadata["dagster/row_count"].value == rows[(part.tenant_id, part.day)]
            assert mat.metadata["rows_written"].value == rows[(part.tenant_id, part.day)]
            assert set(mat.metadata) == {"dagster/row_count", "rows_written", "rows_replaced"}
            assert len(dg.serialize_value(mat.metadata)) <= 512
        (summary,) = result.asset_observations_for_node("analytics__campaign_analytics")
        assert summary.metadata["covered"].value == (
            "tenant-001 2026-03-20..2026-03-24; tenant-002 2026-03-20..2026-03-24"
        )
        assert summary.metadata["run_rows_written"].value == sum(rows.values())
        checks = {
            c.check_name: c for c in result.get_asset_check_evaluations() if c.asset_key == CAMPAIGN
        }
        assert checks["reconciles_with_oltp"].metadata["rules"].value == "reconciles_with_oltp"
        assert "reconciles_with_oltp" not in checks["invariants"].metadata["rules"].value
        # dagster.yaml manages the tracker's logger: its lines are in the run's event log.
        logs = [
            e.message
            for e in instance.all_logs(result.run_id)
            if e.message and e.message.startswith("event infra_latency")
        ]
        assert len(logs) == 7, "one infra_latency per OLAP asset of the run"
