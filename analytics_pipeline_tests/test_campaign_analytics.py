"""campaign_analytics against an independent pandas computation over the same OLTP rows.

Why: the asset's whole job is that these figures are right for exactly the partitions a run asks
for, whatever their number, and that a re-run or a failed run never corrupts what is there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import RollupError
from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import COPY, IN_DATABASE, refresh
from analytics_pipeline.rollups.sql import count_all
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline_tests import oracle
from analytics_pipeline_tests.testbed import TEST_SIZE

GRAIN = ["tenant_id", "date", "campaign_id"]
COLUMNS = GRAIN + oracle.OUTCOMES
ALL = {
    (t, TEST_SIZE.first_day + dt.timedelta(days=i))
    for t in TEST_SIZE.tenant_ids()
    for i in range(TEST_SIZE.days)
}


def _parts(pairs) -> list[TenantDay]:
    return [TenantDay(t, d) for t, d in pairs]


def _olap_rows(olap: OlapDatabase):
    return oracle.read_table(olap.engine, "campaign_analytics", COLUMNS, GRAIN)


@pytest.fixture(scope="module")
def emails(shared_url):
    engine = sa.create_engine(shared_url)
    frame = oracle.read_emails(engine)
    engine.dispose()
    return frame


def test_one_partition_matches_independent_computation(oltp, olap, emails):
    part = {("tenant-002", dt.date(2026, 3, 20))}
    result = refresh(CAMPAIGN_ANALYTICS, _parts(part), oltp=oltp, olap=olap, run_id="t")
    expected = oracle.campaign_analytics({"emails": emails}, part)
    assert len(expected) > 1, "the test partition should have several campaigns"
    assert result.rows_written == len(expected)
    assert result.path == IN_DATABASE
    assert _olap_rows(olap).equals(expected)


def test_whole_range_matches_independent_computation(oltp, olap, emails):
    result = refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="t")
    expected = oracle.campaign_analytics({"emails": emails}, ALL)
    assert result.partitions == len(ALL) == 60
    assert result.windows == 3  # one run of consecutive days per tenant
    assert _olap_rows(olap).equals(expected)
    # Every sent email of the range is counted exactly once; queued ones never.
    assert int(expected["sent"].sum()) == int(emails["sent_at"].notna().sum())


def test_null_campaign_and_midnight_edge_cases(oltp, olap, emails):
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="t")
    rows = _olap_rows(olap)
    one_offs = rows[rows["campaign_id"].isna()]
    # One NULL-campaign row per tenant and day that had one-off emails, never more.
    assert len(one_offs) == len(one_offs[["tenant_id", "date"]].drop_duplicates()) > 0
    # An email sent exactly at 00:00:00 UTC belongs to that day, not the one before.
    with oltp.read_snapshot() as conn:
        tenant, sent_at = conn.execute(
            sa.text(
                "SELECT tenant_id, sent_at FROM emails "
                "WHERE sent_at = date_trunc('day', sent_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' "
                "AND campaign_id IS NOT NULL ORDER BY id LIMIT 1"
            )
        ).one()
    day = sent_at.astimezone(dt.UTC).date()
    expected = oracle.campaign_analytics({"emails": emails}, {(tenant, day)})
    got = rows[(rows["tenant_id"] == tenant) & (rows["date"] == day)].reset_index(drop=True)
    assert got.equals(expected)


def test_range_run_equals_union_of_single_partition_runs(oltp, olap):
    some = sorted(ALL)[:7] + sorted(ALL)[30:33]
    refresh(CAMPAIGN_ANALYTICS, _parts(some), oltp=oltp, olap=olap, run_id="range")
    as_range = _olap_rows(olap)
    with olap.transaction() as conn:
        conn.execute(sa.text("TRUNCATE analytics.campaign_analytics"))
    for p in some:
        refresh(CAMPAIGN_ANALYTICS, _parts([p]), oltp=oltp, olap=olap, run_id="single")
    assert _olap_rows(olap).equals(as_range)


def test_rerun_is_idempotent_and_stamps_the_run(oltp, olap):
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="first")
    first = _olap_rows(olap)
    second_result = refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="second")
    assert _olap_rows(olap).equals(first)
    assert second_result.rows_deleted == second_result.rows_written == len(first)
    with olap.engine.connect() as conn:
        runs = (
            conn.execute(
                sa.text("SELECT DISTINCT refreshed_by_run FROM analytics.campaign_analytics")
            )
            .scalars()
            .all()
        )
    assert runs == ["second"]


def test_writes_exactly_its_partitions(oltp, olap):
    """Rows of other partitions survive; stale rows inside the run's partitions are removed."""
    target = ("tenant-001", dt.date(2026, 3, 15))
    with olap.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO analytics.campaign_analytics (tenant_id, date, campaign_id, sent, "
                "delivered, opened_tracked, clicked_tracked, replied, bounced, unsubscribed, "
                "spam_complaints) VALUES "
                # Same tenant, neighbouring days, and same day of another tenant: must survive.
                "('tenant-001', '2026-03-14', 'x', 9, 0, 0, 0, 0, 0, 0, 0), "
                "('tenant-001', '2026-03-16', 'x', 9, 0, 0, 0, 0, 0, 0, 0), "
                "('tenant-002', '2026-03-15', 'x', 9, 0, 0, 0, 0, 0, 0, 0), "
                # Inside the target partition, a campaign with no emails: must disappear.
                "('tenant-001', '2026-03-15', 'gone', 9, 0, 0, 0, 0, 0, 0, 0)"
            )
        )
    refresh(CAMPAIGN_ANALYTICS, _parts([target]), oltp=oltp, olap=olap, run_id="t")
    with olap.engine.connect() as conn:
        sentinels = conn.execute(
            sa.text(
                "SELECT tenant_id, date::text FROM analytics.campaign_analytics WHERE sent = 9 "
                "AND campaign_id IN ('x', 'gone') ORDER BY 1, 2"
            )
        ).all()
        partitions = conn.execute(
            sa.text(
                "SELECT DISTINCT tenant_id, date FROM analytics.campaign_analytics "
                "WHERE campaign_id IS DISTINCT FROM 'x'"
            )
        ).all()
    assert sentinels == [
        ("tenant-001", "2026-03-14"),
        ("tenant-001", "2026-03-16"),
        ("tenant-002", "2026-03-15"),
    ]
    assert partitions == [target]


def test_failed_refresh_leaves_previous_rows(oltp, olap):
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="good")
    before = _olap_rows(olap)

    def failing_select(w):
        # Same columns, but the SELECT divides by zero once rows are being produced, that is
        # after the DELETE of the run's partitions has already happened in the transaction.
        good = CAMPAIGN_ANALYTICS.select(w)
        return good.with_only_columns(
            *[
                (sa.func.count() / 0).label("sent") if c.name == "sent" else c
                for c in good.selected_columns
            ]
        )

    broken = dataclasses.replace(CAMPAIGN_ANALYTICS, select=failing_select)
    with pytest.raises(
        RollupError,
        match=r"campaign_analytics: refreshing 60 partition\(s\).*"
        r"previous rows are unchanged.*DivisionByZero",
    ):
        refresh(broken, _parts(ALL), oltp=oltp, olap=olap, run_id="bad")
    assert _olap_rows(olap).equals(before)


def test_separate_olap_database_gets_identical_rows_by_copy(oltp, olap, separate_olap_url):
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="same")
    other = OlapDatabase(url=separate_olap_url)
    try:
        for _ in range(2):  # the second pass replaces, it does not duplicate
            result = refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=other, run_id="x")
        assert result.path == COPY
        assert result.rows_written == result.rows_deleted > 0
        got = oracle.read_table(other.engine, "campaign_analytics", COLUMNS, GRAIN)
        assert got.equals(_olap_rows(olap))
    finally:
        other.dispose()


def test_oltp_snapshot_is_read_only(oltp: OltpDatabase):
    with (
        pytest.raises(sa.exc.InternalError, match="read-only transaction"),
        oltp.read_snapshot() as conn,
    ):
        conn.execute(sa.text("UPDATE tenants SET name = name"))


def test_empty_partition_set_is_refused(oltp, olap):
    with pytest.raises(RollupError, match="at least one"):
        refresh(CAMPAIGN_ANALYTICS, [], oltp=oltp, olap=olap)


def test_select_with_wrong_columns_is_caught_at_definition_time():
    def wrong(w):
        return CAMPAIGN_ANALYTICS.select(w).with_only_columns(count_all("sent"))

    with pytest.raises(TypeError, match="campaign_analytics: SELECT yields columns"):
        dataclasses.replace(CAMPAIGN_ANALYTICS, select=wrong)
