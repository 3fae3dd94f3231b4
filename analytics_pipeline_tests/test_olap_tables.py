"""Every OLAP table against the independent pandas oracle, and their guarantees.

Why: each table is a contract with dashboards, finance or compliance. The oracle is written from
the contract, apart from the SQL, and the data holds the edge cases the contract is precise
about (edge_cases.sql: NULL keys, midnight, a tenant with no activity, a zero daily limit,
all-pending warmup, a second currency, void and zero invoices, refunds, subscriptions starting
or cancelled exactly at a day's end, late-recorded admin actions).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import DataQualityError
from analytics_pipeline.partitions import TenantDay
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.rollups.engine import COPY, refresh
from analytics_pipeline.rollups.spec import WriteMode
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.rollups.tables.mailbox_analytics import MAILBOX_ANALYTICS
from analytics_pipeline_tests import oracle
from analytics_pipeline_tests.conftest import TEST_SIZE, truncate_olap

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
    refresh(rollup, _parts(SCATTERED), oltp=oltp, olap=olap, run_id="second")
    assert _rows(olap.engine, rollup) == before
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
        for _ in range(2):
            result = refresh(rollup, _parts(ALL), oltp=oltp, olap=other, run_id="copy")
        assert result.path == COPY
        assert _rows(other.engine, rollup) == _rows(olap.engine, rollup)
    finally:
        other.dispose()


def test_audit_log_never_alters_or_drops_an_action(fresh_url, databases):
    """Compliance: the copy keeps what it first recorded, even if the source row changes."""
    from analytics_pipeline.resources.database import OltpDatabase
    from analytics_pipeline_tests.conftest import make_oltp

    url = databases.create("audit")
    make_oltp(url)
    from analytics_pipeline_tests.conftest import make_olap

    make_olap(url)
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
