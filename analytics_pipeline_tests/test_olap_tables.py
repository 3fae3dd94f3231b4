"""Every OLAP table against the independent pandas oracle, and the refresh's guarantees.

Why: each table is a contract with dashboards, finance or compliance. The oracle is written from
the contract, apart from the SQL, and the data holds the edge cases the contract is precise
about (edge_cases.sql: NULL keys, midnight, a tenant with no activity, a zero daily limit,
all-pending warmup, a second currency, void and zero invoices, refunds, subscriptions starting
or cancelled exactly at a day's end, late-recorded admin actions). The guarantees every table
shares (exact rows for exactly the run's partitions, whatever their number; idempotent re-runs;
the same rows by COPY into another database) are tested per table; those of the engine itself
(a failing SELECT or check leaves the previous rows; stale rows go; OLTP is read-only) once, on
campaign_analytics.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import DataQualityError, RollupError
from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import COPY, IN_DATABASE, refresh
from analytics_pipeline.rollups.spec import WriteMode
from analytics_pipeline.rollups.sql import count_all
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.rollups.tables.mailbox_analytics import MAILBOX_ANALYTICS
from analytics_pipeline_tests import oracle
from analytics_pipeline_tests.testbed import TEST_SIZE, truncate_olap

TENANTS = [*TEST_SIZE.tenant_ids(), "quiet"]
DAYS = [TEST_SIZE.first_day + dt.timedelta(days=i) for i in range(TEST_SIZE.days)]
ALL = {(t, d) for t in TENANTS for d in DAYS}
# Not a rectangle: gaps, single days, and a tenant with no activity.
SCATTERED = {("tenant-001", DAYS[i]) for i in (0, 1, 2, 8, 9, 19)} | {
    ("tenant-003", DAYS[11]),
    ("tenant-003", DAYS[12]),
    ("quiet", DAYS[5]),
}
BY_NAME = {r.name: r for r in REGISTRY}


def _parts(pairs) -> list[TenantDay]:
    return [TenantDay(t, d) for t, d in pairs]


def _columns(rollup) -> list[str]:
    return [c.name for c in rollup.output_columns]


def _rows(engine: sa.Engine, rollup) -> list[dict]:
    grain = oracle.GRAINS[rollup.name]
    return oracle.read_table(engine, rollup.name, _columns(rollup), grain).to_dict("records")


def _expected(sources, rollup, partitions) -> list[dict]:
    return oracle.ORACLES[rollup.name](sources, partitions).to_dict("records")


@pytest.fixture(scope="module")
def sources(shared_url):
    engine = sa.create_engine(shared_url)
    frames = oracle.read_sources(engine)
    engine.dispose()
    return frames


@pytest.mark.parametrize("name", list(BY_NAME))
def test_table_equals_oracle_over_whole_range(name, oltp, olap, sources):
    rollup = BY_NAME[name]
    result = refresh(rollup, _parts(ALL), oltp=oltp, olap=olap, run_id="t")
    expected = _expected(sources, rollup, ALL)
    assert len(expected) > 20, "the test data should give this table many rows"
    got = _rows(olap.engine, rollup)
    assert got == expected
    assert result.rows_written == len(expected)
    assert result.path == IN_DATABASE
    assert result.partitions == len(ALL)
    assert result.windows == len(TENANTS), "one run of consecutive days per tenant"
    assert not [r for r in got if r["tenant_id"] == "quiet"], "no activity, no rows"


@pytest.mark.parametrize("name", list(BY_NAME))
def test_scattered_partitions_equal_oracle_and_union_of_single_runs(name, oltp, olap, sources):
    rollup = BY_NAME[name]
    refresh(rollup, _parts(SCATTERED), oltp=oltp, olap=olap, run_id="range")
    as_range = _rows(olap.engine, rollup)
    assert as_range == _expected(sources, rollup, SCATTERED)
    truncate_olap(olap)
    for p in sorted(SCATTERED):
        refresh(rollup, _parts([p]), oltp=oltp, olap=olap, run_id="single")
    assert _rows(olap.engine, rollup) == as_range


@pytest.mark.parametrize("name", list(BY_NAME))
def test_rerun_is_idempotent_and_touches_only_its_partitions(name, oltp, olap):
    rollup = BY_NAME[name]
    refresh(rollup, _parts(ALL), oltp=oltp, olap=olap, run_id="first")
    before = _rows(olap.engine, rollup)
    second = refresh(rollup, _parts(SCATTERED), oltp=oltp, olap=olap, run_id="second")
    assert _rows(olap.engine, rollup) == before
    inside_rows = len([r for r in before if (r["tenant_id"], r["date"]) in SCATTERED])
    if rollup.write_mode == WriteMode.APPEND_ONLY:
        assert (second.rows_deleted, second.rows_written) == (0, 0), "nothing new to append"
    else:
        assert second.rows_deleted == second.rows_written == inside_rows > 0
    t = rollup.table
    with olap.engine.connect() as conn:
        stamps = conn.execute(
            sa.select(t.c.tenant_id, t.c.date, t.c.refreshed_by_run).distinct()
        ).all()
    for tenant, day, run in stamps:
        inside = (tenant, day) in SCATTERED
        if rollup.write_mode == WriteMode.APPEND_ONLY:
            assert run == "first", "append-only rows are never rewritten"
        else:
            assert run == ("second" if inside else "first"), (tenant, day, run)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_separate_olap_database_gets_identical_rows(name, oltp, olap, separate_olap_url):
    rollup = BY_NAME[name]
    refresh(rollup, _parts(ALL), oltp=oltp, olap=olap, run_id="same")
    other = OlapDatabase(url=separate_olap_url)
    try:
        truncate_olap(other)
        for _ in range(2):  # the second pass replaces (or, append-only, keeps), never doubles
            result = refresh(rollup, _parts(ALL), oltp=oltp, olap=other, run_id="copy")
        assert result.path == COPY
        if rollup.write_mode == WriteMode.APPEND_ONLY:
            assert (result.rows_deleted, result.rows_written) == (0, 0)
        else:
            assert result.rows_written == result.rows_deleted > 0
        assert _rows(other.engine, rollup) == _rows(olap.engine, rollup)
    finally:
        other.dispose()


def test_audit_log_never_alters_or_drops_an_action(databases):
    """Compliance: the copy keeps what it first recorded, even if the source row changes."""
    url = databases.create_demo("audit")
    oltp, olap = OltpDatabase(url=url), OlapDatabase(url=url)
    rollup = BY_NAME["admin_audit_log"]
    part = _parts({(t, d) for t in TEST_SIZE.tenant_ids() for d in DAYS})
    try:
        refresh(rollup, part, oltp=oltp, olap=olap, run_id="first")
        before = _rows(olap.engine, rollup)
        victim = before[0]["action_id"]
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE admin_actions SET action = 'tampered' WHERE id = :i"), {"i": victim}
            )
            conn.execute(
                sa.text("DELETE FROM admin_actions WHERE id = :i"), {"i": before[1]["action_id"]}
            )
            new_id = conn.execute(
                sa.text(
                    "INSERT INTO admin_actions (tenant_id, actor_id, actor_role, action, "
                    "occurred_at) VALUES ('tenant-001', 'a', 'owner', 'late.one', "
                    "'2026-03-15 12:00+00') RETURNING id"
                )
            ).scalar()
        engine.dispose()
        result = refresh(rollup, part, oltp=oltp, olap=olap, run_id="second")
        after = _rows(olap.engine, rollup)
        assert result.rows_deleted == 0 and result.rows_written == 1
        assert [r for r in after if r["action_id"] != new_id] == before
        assert [r["action"] for r in after if r["action_id"] == new_id] == ["late.one"]
    finally:
        oltp.dispose()
        olap.dispose()


def test_broken_invariant_fails_before_commit_naming_table_tenant_date(oltp, olap):
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="good")
    before = _rows(olap.engine, CAMPAIGN_ANALYTICS)

    def inflated(w):
        good = CAMPAIGN_ANALYTICS.select(w)
        return good.with_only_columns(
            *[
                (sa.func.count() + 1).label("delivered") if c.name == "delivered" else c
                for c in good.selected_columns
            ]
        )

    broken = dataclasses.replace(CAMPAIGN_ANALYTICS, select=inflated)
    with pytest.raises(DataQualityError) as err:
        refresh(broken, _parts(ALL), oltp=oltp, olap=olap, run_id="bad")
    e = err.value
    assert (e.check_name, e.rule, e.table) == (
        "invariants",
        "delivered_le_sent",
        "campaign_analytics",
    )
    assert e.tenant == "tenant-001" and e.date == DAYS[0]
    assert "delivered <= sent" in str(e) and "previous rows are unchanged" in str(e)
    assert _rows(olap.engine, CAMPAIGN_ANALYTICS) == before


def test_rows_lost_by_a_join_fail_reconciliation(oltp, olap):
    """A SELECT that silently drops emails (here: an inner join to mailboxes with a limit)."""

    def lossy(w):
        good = MAILBOX_ANALYTICS.select(w)
        return good.where(sa.column("daily_limit") > 0)

    broken = dataclasses.replace(MAILBOX_ANALYTICS, select=lossy)
    with pytest.raises(DataQualityError) as err:
        refresh(broken, _parts(ALL), oltp=oltp, olap=olap, run_id="bad")
    assert err.value.check_name == "reconciles_with_oltp"
    assert err.value.tenant == "tenant-001"
    assert "OLTP has" in str(err.value)
    with olap.engine.connect() as conn:
        assert (
            conn.execute(sa.text("SELECT count(*) FROM analytics.mailbox_analytics")).scalar() == 0
        )


# -- The engine's own guarantees, shown on campaign_analytics ----------------------------------


def test_campaign_edge_cases_null_campaign_midnight_and_every_sent_email_once(oltp, olap, sources):
    """The oracle comparison above is only as good as the oracle: these pin, against raw OLTP,
    what campaign_analytics' contract is precise about."""
    result = refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="t")
    rows = _rows(olap.engine, CAMPAIGN_ANALYTICS)
    emails = sources["emails"]
    # Every sent email of the range is counted exactly once; queued ones never.
    assert sum(r["sent"] for r in rows) == int(emails["sent_at"].notna().sum())
    assert result.rows_written == len(rows)
    # One NULL-campaign row per tenant and day that had one-off emails, never more.
    one_offs = [(r["tenant_id"], r["date"]) for r in rows if r["campaign_id"] is None]
    assert len(one_offs) == len(set(one_offs)) > 0
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
    got = [r for r in rows if (r["tenant_id"], r["date"]) == (tenant, day)]
    assert got == _expected(sources, CAMPAIGN_ANALYTICS, {(tenant, day)})
    assert got


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
    """A SELECT that fails in the database (not a check) rolls the DELETE back too."""
    refresh(CAMPAIGN_ANALYTICS, _parts(ALL), oltp=oltp, olap=olap, run_id="good")
    before = _rows(olap.engine, CAMPAIGN_ANALYTICS)

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
        match=rf"campaign_analytics: refreshing {len(ALL)} partition\(s\).*"
        r"previous rows are unchanged.*DivisionByZero",
    ):
        refresh(broken, _parts(ALL), oltp=oltp, olap=olap, run_id="bad")
    assert _rows(olap.engine, CAMPAIGN_ANALYTICS) == before


def test_oltp_snapshot_is_read_only(oltp: OltpDatabase):
    with (
        pytest.raises(sa.exc.InternalError, match="read-only transaction"),
        oltp.read_snapshot() as conn,
    ):
        conn.execute(sa.text("UPDATE tenants SET name = name"))


def test_a_snapshot_read_sees_exactly_the_exporting_transactions_snapshot(fresh_url: str):
    """The reconciliation counts on a second connection while the rollup lands its rows
    (engine._land_and_count): it must read the rollup's snapshot, not a newer one, or a row
    committed in between would fail (or pass) the reconciliation wrongly."""
    db = OltpDatabase(url=fresh_url)
    engine = sa.create_engine(fresh_url)
    count = sa.text("SELECT count(*) FROM tenants")
    try:
        with (
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as rollup,
            rollup.begin(),
        ):
            before = rollup.execute(count).scalar_one()
            snapshot = rollup.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
            with engine.begin() as writer:  # a tenant created while the rollup runs
                writer.execute(
                    sa.text(
                        "INSERT INTO tenants (id, name, status) "
                        "VALUES ('tenant-late', 'Late', 'active')"
                    )
                )
            with db.read_snapshot(snapshot) as conn:
                assert conn.execute(count).scalar_one() == before
            with db.read_snapshot() as conn:
                assert conn.execute(count).scalar_one() == before + 1
        with (
            pytest.raises(ValueError, match="not a PostgreSQL snapshot id"),
            db.read_snapshot("1'; DROP TABLE tenants; --"),
        ):
            pass
    finally:
        engine.dispose()


def test_empty_partition_set_is_refused(oltp, olap):
    with pytest.raises(RollupError, match="at least one"):
        refresh(CAMPAIGN_ANALYTICS, [], oltp=oltp, olap=olap)


def test_select_with_wrong_columns_is_caught_at_definition_time():
    def wrong(w):
        return CAMPAIGN_ANALYTICS.select(w).with_only_columns(count_all("sent"))

    with pytest.raises(TypeError, match="campaign_analytics: SELECT yields columns"):
        dataclasses.replace(CAMPAIGN_ANALYTICS, select=wrong)
