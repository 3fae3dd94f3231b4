"""OLTP reads from a hot-standby replica: exact tables, no change lost to replication lag.

Why: on a real product the rollups' GROUP BYs belong on a streaming replica, never on the
primary. The replica is a real one (replica.py: pg_basebackup -R from a primary of the test's
own), OLAP is another database on another server, and the pipeline must give the oracle's rows;
the late-data sensor must not let its watermark run ahead of what the standby has replayed; a
query the standby cancels for a recovery conflict must be retried, not fail the run.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.automation import sensors
from analytics_pipeline.partitions import (
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    add_tenants,
    parse_partition_keys,
    tenant_daily_partitions,
)
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import COPY, is_transient, refresh
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline_tests import oracle
from analytics_pipeline_tests.replica import ReplicaPair, replica_pair  # noqa: F401 (fixture)
from analytics_pipeline_tests.testbed import TEST_SIZE, make_olap, make_oltp, truncate_olap

TENANTS = [*TEST_SIZE.tenant_ids(), "quiet"]
ALL = [
    TenantDay(t, TEST_SIZE.first_day + dt.timedelta(days=i))
    for t in TENANTS
    for i in range(TEST_SIZE.days)
]
COLUMNS = {r.name: [c.name for c in r.output_columns] for r in REGISTRY}
DAY = dt.date(2026, 3, 20)
OPENED = sa.text(
    "SELECT sum(opened_tracked), sum(sent) FROM analytics.campaign_analytics "
    "WHERE tenant_id = 'tenant-001' AND date = :d"
)


@pytest.fixture(scope="module")
def loaded(replica_pair: ReplicaPair, databases) -> tuple[ReplicaPair, str]:  # noqa: F811
    """The demo (with the edge cases) written on the primary and replayed by the standby."""
    make_oltp(replica_pair.primary.url(), edge_cases=True)
    replica_pair.wait_for_replay()
    olap_url = databases.create("replica_olap")
    make_olap(olap_url)
    return replica_pair, olap_url


def _scalar(url: str, statement: str, **params):
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            result = conn.execute(sa.text(statement), params)
            return result.scalar() if result.returns_rows else None
    finally:
        engine.dispose()


def _wait(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_every_table_is_exact_when_oltp_is_the_standby(loaded):
    pair, olap_url = loaded
    standby = pair.standby.url()
    assert _scalar(standby, "SELECT pg_is_in_recovery()") is True
    oltp, olap = OltpDatabase(url=standby), OlapDatabase(url=olap_url)
    truncate_olap(olap)
    primary = sa.create_engine(pair.primary.url())
    sources = oracle.read_sources(primary)  # the oracle reads the primary, the pipeline the standby
    primary.dispose()
    try:
        for rollup in REGISTRY:
            assert refresh(rollup, ALL, oltp=oltp, olap=olap, run_id="replica").path == COPY
        oracle.assert_tables_exact(
            olap.engine, sources, {(p.tenant_id, p.day) for p in ALL}, COLUMNS
        )
    finally:
        oltp.dispose()
        olap.dispose()


# The late-data sensor's lag in these tests: short, so that replay catches up within it.
LAG = 1.0


def _tick(instance: dg.DagsterInstance, url: str, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"oltp": OltpDatabase(url=url)}
    ) as ctx:
        return sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=LAG))(ctx)


def _watermark(cursor: str) -> dt.datetime:
    return dt.datetime.fromisoformat(json.loads(cursor)["emails.updated_at"])


def test_late_data_sensor_uses_the_replay_position_not_the_standby_clock(loaded):
    """Replay paused: the standby's clock passes the change, its data does not; nothing is lost."""
    pair, olap_url = loaded
    primary, standby = pair.primary.url(), pair.standby.url()
    oltp, olap = OltpDatabase(url=standby), OlapDatabase(url=olap_url)
    truncate_olap(olap)
    campaign = next(r for r in REGISTRY if r.name == "campaign_analytics")
    refresh(campaign, [TenantDay("tenant-001", DAY)], oltp=oltp, olap=olap, run_id="before")
    with olap.engine.connect() as conn:
        opened_before, sent = conn.execute(OPENED, {"d": DAY}).one()
    assert opened_before < sent, "the test needs unopened emails on that day"

    with dg.DagsterInstance.ephemeral() as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        start = _tick(instance, standby, None)
        _scalar(standby, "SELECT pg_wal_replay_pause()")
        try:
            _wait(
                lambda: _scalar(standby, "SELECT pg_get_wal_replay_pause_state()") == "paused",
                "replay to pause",
            )
            changed_at = _scalar(
                primary,
                "WITH c AS (UPDATE emails SET opened = now() WHERE tenant_id = 'tenant-001' "
                "AND opened IS NULL AND sent_at >= :lo AND sent_at < :hi RETURNING updated_at) "
                "SELECT max(updated_at) FROM c",
                lo=dt.datetime.combine(DAY, dt.time(), dt.UTC),
                hi=dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(), dt.UTC),
            )
            # The standby's own clock is now past the change plus the lag: a clock-based
            # watermark would move past the change, which the standby cannot show yet.
            _wait(
                lambda: _scalar(
                    standby, "SELECT clock_timestamp() > :t", t=changed_at + dt.timedelta(seconds=2)
                ),
                "the standby's clock to pass the change",
            )
            paused = _tick(instance, standby, start.cursor)
            assert paused.run_requests == []
            assert _watermark(paused.cursor) < changed_at
            # Any later commit on the primary (here a heartbeat) moves the replay position on.
            _scalar(
                primary, "SELECT pg_logical_emit_message(true, 'analytics_pipeline', 'heartbeat')"
            )
        finally:
            _scalar(standby, "SELECT pg_wal_replay_resume()")
        pair.wait_for_replay()

        resumed = _tick(instance, standby, paused.cursor)
        assert _watermark(resumed.cursor) >= changed_at
        requested = [r for r in resumed.run_requests if campaign.name in str(r.asset_selection)]
        assert requested, resumed.run_requests
        for request in requested:
            partitions = parse_partition_keys(
                tenant_daily_partitions().get_partition_keys_in_range(
                    dg.PartitionKeyRange(
                        request.tags["dagster/asset_partition_range_start"],
                        request.tags["dagster/asset_partition_range_end"],
                    ),
                    dynamic_partitions_store=instance,
                )
            )
            assert TenantDay("tenant-001", DAY) in partitions
            refresh(campaign, partitions, oltp=oltp, olap=olap, run_id="after")
        assert instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)
    with olap.engine.connect() as conn:
        assert conn.execute(OPENED, {"d": DAY}).one() == (sent, sent)
    oltp.dispose()
    olap.dispose()


def test_a_recovery_conflict_cancellation_is_transient(loaded):
    """The standby cancels a reader whose lock blocks replay: that error must mean "retry"."""
    pair, _ = loaded
    primary, standby = pair.primary.url(), pair.standby.url()
    _scalar(primary, "CREATE TABLE conflict_probe AS SELECT 1 AS x")
    pair.wait_for_replay()
    _scalar(standby, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
    _scalar(standby, "SELECT pg_reload_conf()")
    oltp = OltpDatabase(url=standby, application_name="conflict_probe_reader")
    caught: list[BaseException] = []

    def read() -> None:
        try:
            with oltp.read_snapshot() as conn:
                conn.execute(sa.text("SELECT pg_sleep(60) FROM conflict_probe")).all()
        except sa.exc.DBAPIError as exc:
            caught.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        _wait(
            lambda: _scalar(
                standby,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'conflict_probe_reader' AND wait_event = 'PgSleep'",
            ),
            "the reader to hold its lock",
        )
        _scalar(primary, "DROP TABLE conflict_probe")  # replaying it needs an exclusive lock
        reader.join(timeout=60)
        assert not reader.is_alive(), "the standby did not cancel the conflicting query"
    finally:
        _scalar(standby, "ALTER SYSTEM RESET max_standby_streaming_delay")
        _scalar(standby, "SELECT pg_reload_conf()")
        oltp.dispose()
    (exc,) = caught
    assert "conflict with recovery" in str(exc.orig)
    assert exc.orig.sqlstate == "40001"
    assert is_transient(exc)
