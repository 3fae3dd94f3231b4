"""End to end with the real dagster-daemon: a late change in OLTP reaches OLAP with no click.

Why: the sensors are only useful if the daemon runs them and launches what they request, on a
PostgreSQL-backed instance configured by the project's dagster.yaml.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline_tests.testbed import (
    TEST_SIZE,
    start_daemon,
    terminate,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-03-20"
LO = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
OPENED = sa.text(
    "SELECT coalesce(sum(opened_tracked), 0) FROM analytics.campaign_analytics "
    "WHERE tenant_id = 'tenant-001' AND date = :d"
)


def test_late_opens_are_refreshed_by_the_daemon(databases, tmp_path, monkeypatch):
    oltp_url = databases.create_demo("daemon_oltp")
    dagster_url = (
        sa.make_url(databases.create("daemon_dagster"))
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {
        **os.environ,
        "OLTP_DATABASE_URL": oltp_url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(tmp_path),
        "ANALYTICS_LATE_DATA_LAG_SECONDS": "1",
    }
    env.pop("OLAP_DATABASE_URL", None)
    for k in ("OLTP_DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"):
        monkeypatch.setenv(k, env[k])
    from analytics_pipeline.definitions import defs

    engine = sa.create_engine(oltp_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        tags = range_tags(
            TenantDay("tenant-001", TEST_SIZE.first_day),
            TenantDay("tenant-003", TEST_SIZE.last_day),
        )
        # campaign_analytics alone: the one table this test reads.
        assert (
            defs.resolve_job_def("refresh_analytics")
            .execute_in_process(
                instance=instance,
                tags=tags,
                asset_selection=[dg.AssetKey(["analytics", "campaign_analytics"])],
            )
            .success
        )
        with engine.connect() as conn:
            before = conn.execute(OPENED, {"d": DAY}).scalar()

        daemon = start_daemon(env)
        try:

            def watching():
                states = instance.all_instigator_state()
                return any(
                    s.name == "late_data_sensor"
                    and s.instigator_data
                    and getattr(s.instigator_data, "cursor", None)
                    for s in states
                )

            wait_until(watching, 120, "the late-data sensor's first tick")
            with engine.begin() as conn:
                changed = conn.execute(
                    sa.text(
                        "UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-001' AND "
                        "opened IS NULL AND sent_at >= :lo AND sent_at < :hi"
                    ),
                    {"lo": LO, "hi": LO + dt.timedelta(days=1)},
                ).rowcount
            assert changed > 0
            changed_at = time.monotonic()

            def refreshed():
                with engine.connect() as conn:
                    return conn.execute(OPENED, {"d": DAY}).scalar() == before + changed

            wait_until(refreshed, 150, "the OLAP row to show the late opens")
            print(f"freshness: {time.monotonic() - changed_at:.1f}s from OLTP change to OLAP row")
        finally:
            terminate(daemon)
    engine.dispose()
