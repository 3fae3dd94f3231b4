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
import pytest
import sqlalchemy as sa

from analytics_pipeline.names import REFRESH_JOB
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
    "WHERE tenant_id = :t AND date = :d"
).bindparams(t="tenant-001")


def _daemon_env(databases, tmp_path, monkeypatch, name: str, **extra: str) -> dict[str, str]:
    """The environment of a daemon on demo OLTP data and a Dagster database of its own, the
    project's dagster.yaml in `tmp_path`; this process's environment points at them too."""
    oltp_url = databases.create_demo(f"{name}_oltp")
    dagster_url = (
        sa.make_url(databases.create(f"{name}_dagster"))
        .set(drivername="postgresql+psycopg2")
        .render_as_string(hide_password=False)
    )
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    ours = {
        "OLTP_DATABASE_URL": oltp_url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(tmp_path),
        **extra,
    }
    for k, v in ours.items():
        monkeypatch.setenv(k, v)
    env = {**os.environ, **ours}
    env.pop("OLAP_DATABASE_URL", None)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    return env


def test_late_opens_are_refreshed_by_the_daemon(databases, tmp_path, monkeypatch):
    env = _daemon_env(
        databases, tmp_path, monkeypatch, "daemon", ANALYTICS_LATE_DATA_LAG_SECONDS="1"
    )
    from analytics_pipeline.definitions import defs

    engine = sa.create_engine(env["OLTP_DATABASE_URL"])
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

            # Generous bounds: each hop (the sensor's tick, the queue, a run worker's start and
            # code load) can take minutes on a machine shared with other heavy work; a wait
            # ends as soon as its condition holds.
            wait_until(refreshed, 600, "the OLAP row to show the late opens")
            print(f"freshness: {time.monotonic() - changed_at:.1f}s from OLTP change to OLAP row")

            # Changes far apart (two tenants, two weeks apart): no rectangle covers them within
            # 2x, so the sensor requests a run of the exact-refresh job; the daemon must launch
            # it from the sensor's request as it launches range runs.
            scattered = {("tenant-002", "2026-03-13"): 0, ("tenant-003", "2026-03-27"): 0}
            with engine.begin() as conn:
                for tenant, day in scattered:
                    opened = OPENED.bindparams(t=tenant)
                    before_cell = conn.execute(opened, {"d": day}).scalar()
                    lo = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
                    scattered[(tenant, day)] = (
                        before_cell
                        + conn.execute(
                            sa.text(
                                "UPDATE emails SET opened = now() WHERE tenant_id = :t AND "
                                "opened IS NULL AND sent_at >= :lo AND sent_at < :hi"
                            ),
                            {"t": tenant, "lo": lo, "hi": lo + dt.timedelta(days=1)},
                        ).rowcount
                    )

            def exact_run_done():
                runs = instance.get_runs(dg.RunsFilter(job_name="refresh_exact_partitions"))
                return bool(runs) and all(r.is_finished for r in runs)

            scattered_at = time.monotonic()
            wait_until(exact_run_done, 600, "the exact-refresh run of the scattered changes")
            print(f"exact run: {time.monotonic() - scattered_at:.1f}s from OLTP change to its end")
            exact = instance.get_runs(dg.RunsFilter(job_name="refresh_exact_partitions"))
            assert [r.status for r in exact] == [dg.DagsterRunStatus.SUCCESS]
            assert exact[0].tags["analytics/reason"] == "late-data"
            with engine.connect() as conn:
                for (tenant, day), want in scattered.items():
                    assert conn.execute(OPENED.bindparams(t=tenant), {"d": day}).scalar() == want
        finally:
            terminate(daemon)
    engine.dispose()


def _job_backfill(backfill_id: str, job: str, partition_names: list[str]):
    """What the job's Partitions tab in the UI records for "Launch backfill" of every partition:
    a backfill of the job's partition set, its keys listed (workspace.yaml's location)."""
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemotePartitionSetOrigin,
        RemoteRepositoryOrigin,
    )

    origin = RemotePartitionSetOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin("analytics_pipeline"),
            repository_name="__repository__",
        ),
        partition_set_name=f"{job}_partition_set",
    )
    return PartitionBackfill(
        backfill_id=backfill_id,
        status=BulkActionStatus.REQUESTED,
        from_failure=False,
        tags={},
        backfill_timestamp=time.time(),
        partition_set_origin=origin,
        partition_names=partition_names,
    )


@pytest.mark.parametrize("kind", ["assets", "job"])
def test_a_backfill_of_every_table_and_partition_is_one_run(databases, tmp_path, monkeypatch, kind):
    # What a user gets from the UI's "Materialize all" -> every partition, all seven tables
    # (an asset backfill), or from the refresh_analytics job's Partitions tab -> "Launch
    # backfill" of every partition (a job backfill, another path in Dagster): Dagster alone
    # makes one run per tenant (three here, 500 in production); the project's rectangles
    # (instance/backfill_runs.py) make one run, and the backfill still ends with every
    # partition of every table materialized.
    from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill

    from analytics_pipeline.rollups.tables import REGISTRY
    from analytics_pipeline.settings.model import Settings
    from analytics_pipeline.wiring import build_definitions

    # From the demo's first day: 3 tenants x the days up to today.
    env = _daemon_env(
        databases,
        tmp_path,
        monkeypatch,
        "backfill",
        ANALYTICS_PARTITIONS_START=TEST_SIZE.first_day.isoformat(),
    )
    defs = build_definitions(Settings.from_env())
    graph = defs.resolve_asset_graph()
    tables = [dg.AssetKey(["analytics", r.name]) for r in REGISTRY]
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        backfill_id = f"backfill-all-{kind}"
        parts = graph.get(tables[0]).partitions_def
        assert parts is not None
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            every = set(parts.get_partition_keys())
        backfill = (
            _job_backfill(backfill_id, REFRESH_JOB, sorted(every))
            if kind == "job"
            else PartitionBackfill.from_asset_partitions(
                backfill_id=backfill_id,
                asset_graph=graph,
                partition_names=None,
                asset_selection=tables,
                backfill_timestamp=time.time(),
                tags={},
                dynamic_partitions_store=instance,
                all_partitions=True,
                title=None,
                description=None,
                run_config=None,
            )
        )
        instance.add_backfill(backfill)
        daemon = start_daemon(env)
        try:

            def finished():
                backfill = instance.get_backfill(backfill_id)
                return backfill is not None and backfill.status != BulkActionStatus.REQUESTED

            wait_until(finished, 600, "the backfill to finish")
        finally:
            terminate(daemon)
        backfill = instance.get_backfill(backfill_id)
        assert backfill is not None
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS
        assert len(every) == len(TEST_SIZE.tenant_ids()) * (
            (dt.datetime.now(dt.UTC).date() - TEST_SIZE.first_day).days + 1
        )
        for key in tables:
            assert instance.get_materialized_partitions(key) == every, key
