"""Retention: every table declares how long it keeps partitions, and expired ones go.

Why: keeping data longer than its purpose needs is a liability, and each table's period differs
(campaign analytics 25 months, billing 7 years). Expired partitions must disappear from OLAP and
from Dagster's history (whose materialization previews hold rows), in bounded batches, while
every partition inside its period stays exactly as it was; the UI must show the period.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.governance.retention import delete_expired_rows, enforce
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.rollups.spec import Retention
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.billing_analytics import BILLING_ANALYTICS
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline_tests.testbed import TEST_SIZE

ROOT = Path(__file__).resolve().parents[1]


def test_every_table_declares_its_retention_and_the_ui_shows_it(monkeypatch, shared_url):
    monkeypatch.setenv("OLTP_DATABASE_URL", shared_url)
    from analytics_pipeline.definitions import defs

    months = {r.name: r.retention.months for r in REGISTRY}
    assert months["campaign_analytics"] == 25 and months["billing_analytics"] == 84
    assert months["admin_audit_log"] == 84
    for r in REGISTRY:
        key = dg.AssetKey(["analytics", r.name])
        shown = defs.resolve_assets_def(key).specs_by_key[key].metadata["retention"]
        assert shown == r.retention.describe() and shown.split(":")[0].endswith(("months", "years"))


def test_cutoff_counts_calendar_months():
    assert Retention(25, "x").cutoff(dt.date(2026, 3, 31)) == dt.date(2024, 2, 29)
    assert Retention(84, "x").cutoff(dt.date(2026, 3, 15)) == dt.date(2019, 3, 15)


def _count(url: str, table: str, before: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(
            sa.text(f"SELECT count(*) FROM analytics.{table} WHERE date < :d"),  # noqa: S608
            {"d": before},
        ).scalar_one()
    engine.dispose()
    return n


def test_expired_partitions_are_deleted_in_bounded_batches(databases, tmp_path, monkeypatch):
    # One database for OLTP and OLAP: the definitions' OLAP resource follows OLTP_DATABASE_URL
    # unless OLAP_DATABASE_URL was set when they were first imported.
    oltp_url = olap_url = databases.create_demo("retention")
    dagster_url = sa.make_url(databases.create("ret_dagster")).set(drivername="postgresql+psycopg2")
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_url.render_as_string(hide_password=False))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    from analytics_pipeline.definitions import defs

    olap = OlapDatabase(url=olap_url)
    campaign = dg.AssetKey(["analytics", "campaign_analytics"])
    billing = dg.AssetKey(["analytics", "billing_analytics"])
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        first, last = (
            TenantDay("tenant-001", dt.date(2026, 3, 12)),
            TenantDay("tenant-003", dt.date(2026, 3, 31)),
        )
        result = defs.resolve_job_def("refresh_analytics").execute_in_process(
            instance=instance, tags=range_tags(first, last)
        )
        assert result.success
        # 25 months on, campaign analytics before 2026-03-20 have expired; billing has not.
        today = dt.date(2028, 4, 20)
        cutoff = CAMPAIGN_ANALYTICS.retention.cutoff(today)
        assert cutoff == dt.date(2026, 3, 20)
        expired = _count(olap_url, "campaign_analytics", "2026-03-20")
        kept = _count(olap_url, "campaign_analytics", "2026-04-01") - expired
        billing_rows = _count(olap_url, "billing_analytics", "2026-04-01")
        assert expired > 4 and kept > 0 and billing_rows > 0

        # Bounded: 2 batches of 2 rows delete 4 rows, no more; the next call goes on.
        assert delete_expired_rows(olap, CAMPAIGN_ANALYTICS, cutoff, batch=2, max_batches=2) == 4
        assert _count(olap_url, "campaign_analytics", "2026-03-20") == expired - 4

        done = {e.table: e for e in enforce(olap, instance, today, batch=3, max_batches=1000)}
        assert done["campaign_analytics"].rows_deleted == expired - 4
        assert done["billing_analytics"].rows_deleted == 0
        assert _count(olap_url, "campaign_analytics", "2026-03-20") == 0
        assert _count(olap_url, "campaign_analytics", "2026-04-01") == kept
        assert _count(olap_url, "billing_analytics", "2026-04-01") == billing_rows
        # Dagster forgets the expired partitions' materializations, and only those.
        dates = {k.split("|")[0] for k in instance.get_materialized_partitions(campaign)}
        assert min(dates) == "2026-03-20" and max(dates) == "2026-03-31"
        assert done["campaign_analytics"].events_deleted >= 3 * 8  # 3 tenants x 8 days
        billed = {k.split("|")[0] for k in instance.get_materialized_partitions(billing)}
        assert min(billed) == "2026-03-12"
        assert BILLING_ANALYTICS.retention.cutoff(today) < dt.date(2026, 3, 12)
    olap.dispose()
