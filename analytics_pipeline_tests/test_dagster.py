"""The Dagster definitions and real runs through them.

Why: users work through Dagster: the definitions must load with lineage from the OLTP tables, and
a run (one partition, or a range) must compute exactly the keys Dagster hands it, with the
instance itself stored in PostgreSQL as dagster.yaml configures it.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_postgres.run_storage import PostgresRunStorage

from analytics_pipeline.assets.rollups import build_rollup_asset
from analytics_pipeline.assets.selection import rollup_selection
from analytics_pipeline.assets.sources import source_specs
from analytics_pipeline.names import REFRESH_JOB, table_key
from analytics_pipeline.partitions import TenantDay, add_tenants, parse_partition_key, range_tags
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.schema import metadata as olap_metadata
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.warehouse.migrate import upgrade
from analytics_pipeline_tests.conftest import TEST_SIZE

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = dg.AssetKey(["analytics", "campaign_analytics"])


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(sql)).all()]
    engine.dispose()
    return rows


def _olap_partitions(url: str) -> set[tuple[str, dt.date]]:
    sql = "SELECT DISTINCT tenant_id, date FROM analytics.campaign_analytics"
    return {(t, d) for t, d in _query(url, sql)}


def _olap_rows_by_partition(url: str) -> dict[tuple[str, dt.date], int]:
    sql = "SELECT tenant_id, date, count(*) FROM analytics.campaign_analytics GROUP BY 1, 2"
    return {(t, d): n for t, d, n in _query(url, sql)}


def _declared_checks(rollup: Rollup) -> set[str]:
    """The asset checks a table's spec asks for: invariants if it declares any, reconciliation
    if it declares one (written out here, not taken from the asset factory under test)."""
    declared = set()
    if rollup.invariants:
        declared.add("invariants")
    if rollup.reconciliation is not None:
        declared.add("reconciles_with_oltp")
    return declared


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
    for rollup in REGISTRY:
        node = graph.get(table_key(rollup.name))
        assert node.parent_keys == {dg.AssetKey(["oltp", t.name]) for t in rollup.sources}
        assert node.group_name == rollup.group
        checks = {k.name for k in defs.resolve_assets_def(node.key).check_keys}
        assert checks == _declared_checks(rollup), rollup.name
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
        checks = result.get_asset_check_evaluations()
        assert {(c.asset_key.path[-1], c.check_name) for c in checks} == {
            (r.name, check) for r in REGISTRY for check in _declared_checks(r)
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
        assert len(logs) == len(REGISTRY), "one infra_latency per OLAP asset of the run"


# An eighth table, written as a new module would be: its declaration and its spec, nothing else.
EIGHTH_TABLE_MODULE = """
import sqlalchemy as sa

from analytics_pipeline.rollups.schema import count_column, olap_table
from analytics_pipeline.rollups.spec import PRODUCT_ANALYTICS, Reconciliation, Rollup
from analytics_pipeline.rollups.sql import Windows, count_all, utc_day
from analytics_pipeline.sources.tables import emails

table = olap_table(
    "emails_sent_analytics",
    grain=[],
    columns=[count_column("emails_sent", "Emails sent on the UTC day.")],
    comment="Emails sent per tenant and UTC day.",
)


def select(w: Windows) -> sa.Select:
    day = utc_day(emails.c.sent_at)
    return (
        sa.select(emails.c.tenant_id, day.label("date"), count_all("emails_sent"))
        .select_from(w.rows_of(emails, emails.c.sent_at))
        .group_by(emails.c.tenant_id, day)
    )


EMAILS_SENT_ANALYTICS = Rollup(
    table=table,
    sources=(emails,),
    select=select,
    description="Emails sent per tenant and UTC day.",
    group="email",
    reconciliation=Reconciliation(emails, "sent_at", indexed=True, column="emails_sent"),
    retention=PRODUCT_ANALYTICS,
)
"""


@pytest.fixture
def eighth_table(tmp_path: Path) -> Iterator[Rollup]:
    """The spec of a table the project does not have, imported from a module of its own; its
    table leaves the shared OLAP MetaData afterwards, so no other test sees it."""
    path = tmp_path / "emails_sent_analytics.py"
    path.write_text(EIGHTH_TABLE_MODULE)
    spec = importlib.util.spec_from_file_location("emails_sent_analytics", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.EMAILS_SENT_ANALYTICS
    olap_metadata.remove(module.table)


def test_an_eighth_table_is_its_module_plus_one_registry_line(
    eighth_table: Rollup, shared_url: str, databases
):
    """Adding a table is its module plus one line in the registry: with the spec appended to
    the registry, its asset (lineage, checks as its spec declares them), the refresh job's
    selection and the OLAP schema all follow, and a run materializes it and reconciles it."""
    rollups = (*REGISTRY, eighth_table)
    key = table_key(eighth_table.name)
    assets = [build_rollup_asset(r) for r in rollups]
    olap_url = databases.create("eighth")
    engine = sa.create_engine(olap_url)
    with engine.begin() as conn:
        assert f"created analytics.{eighth_table.name}" in upgrade(conn, rollups)
    engine.dispose()
    eighth_defs = dg.Definitions(
        assets=[dg.AssetsDefinition(specs=source_specs), *assets],
        jobs=[dg.define_asset_job(REFRESH_JOB, selection=rollup_selection(rollups))],
        resources={
            "oltp": OltpDatabase(url=shared_url),
            "olap": OlapDatabase(url=olap_url),
            "tracking": EventTrackingResource(),
        },
    )
    graph = eighth_defs.resolve_asset_graph()
    assert graph.get(key).parent_keys == {dg.AssetKey(["oltp", "emails"])}
    assert {k.name for k in eighth_defs.resolve_assets_def(key).check_keys} == {
        "reconciles_with_oltp"
    }, "no invariants declared: no invariants check"
    job = eighth_defs.resolve_job_def(REFRESH_JOB)
    assert key in job.asset_layer.selected_asset_keys
    assert rollup_selection(rollups).resolve(graph) == {table_key(r.name) for r in rollups}
    with dg.instance_for_test() as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        partition = TenantDay("tenant-003", dt.date(2026, 3, 25))
        result = job.execute_in_process(
            instance=instance,
            partition_key=str(partition.partition_key()),
            asset_selection=[key],
        )
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert (check.asset_key, check.check_name, check.passed) == (
            key,
            "reconciles_with_oltp",
            True,
        )
    written = _query(
        olap_url, "SELECT tenant_id, date, emails_sent FROM analytics.emails_sent_analytics"
    )
    assert [(t, d) for t, d, _ in written] == [(partition.tenant_id, partition.day)]
    assert written[0][2] > 0
