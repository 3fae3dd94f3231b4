"""What the Dagster catalog says about each asset: column lineage, code references, freshness,
and the observations of the OLTP sources.

Why: the UI is the front door. A column's lineage must say truthfully which OLTP columns it is
computed from, for every table, or a dashboard author is misled; it is derived from the SQL, so
this test holds it against the contract (shared/contract/olap_tables.md), written out by hand
here. Code references must lead to the file that defines the asset; sources must report figures
that match the database.
"""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.automation.observations import source_observation_sensor
from analytics_pipeline.definitions import defs
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.rollups.lineage import column_lineage
from analytics_pipeline.rollups.schema import contract_columns
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.sources.tables import metadata as oltp_metadata
from analytics_pipeline_tests.conftest import make_oltp


def _cols(table: str, *names: str) -> set[tuple[str, str]]:
    return {(table, n) for n in names}


def _emails(*names: str) -> set[tuple[str, str]]:
    return _cols("emails", *names)


# Per the contract: each count counts the emails of the grain by sent_at (the day) satisfying its
# definition; grain columns are copied. The rule: analytics_pipeline/rollups/lineage.py.
_OUTCOMES = {
    "sent": _emails("sent_at"),
    "delivered": _emails("status", "sent_at"),
    "opened_tracked": _emails("opened", "sent_at"),
    "clicked_tracked": _emails("clicked", "sent_at"),
    "replied": _emails("replied", "sent_at"),
    "bounced": _emails("bounce_type", "sent_at"),
    "unsubscribed": _emails("unsubscribed", "sent_at"),
    "spam_complaints": _emails("complaint", "sent_at"),
}
_EMAIL_GRAIN = {"tenant_id": _emails("tenant_id"), "date": _emails("sent_at")}
_LEAD_TIMES = ("created_at", "first_contacted_at", "first_replied_at", "converted_at")
_LEAD_TIMES = (*_LEAD_TIMES, "unsubscribed_at")
_WARMUP = "warmup_emails"
_ISSUED = _cols("invoices", "issued_at", "status")
_ACTIVE = _cols("subscriptions", "started_at", "canceled_at")
_AUDIT_COPIES = ("recorded_at", "actor_id", "actor_role", "action", "target_type", "target_id")
_AUDIT_COPIES = (*_AUDIT_COPIES, "ip_address", "details", "occurred_at")

CONTRACT_LINEAGE: dict[str, dict[str, set[tuple[str, str]]]] = {
    "campaign_analytics": {**_EMAIL_GRAIN, "campaign_id": _emails("campaign_id"), **_OUTCOMES},
    "sequence_step_analytics": {
        **_EMAIL_GRAIN,
        "campaign_id": _emails("campaign_id"),
        "sequence_step_id": _emails("sequence_step_id"),
        "step_number": _cols("sequence_steps", "step_number"),
        **_OUTCOMES,
    },
    "mailbox_analytics": {
        **_EMAIL_GRAIN,
        "mailbox_id": _emails("mailbox_id"),
        **{k: _OUTCOMES[k] for k in ("sent", "delivered", "replied", "spam_complaints")},
        "hard_bounced": _emails("bounce_type", "sent_at"),
        "soft_bounced": _emails("bounce_type", "sent_at"),
        "daily_limit": _cols("mailboxes", "daily_limit"),
        "limit_utilization": _emails("sent_at") | _cols("mailboxes", "daily_limit"),
    },
    "lead_analytics": {
        "tenant_id": _cols("leads", "tenant_id"),
        # A lead lands on the day of each of its five timestamps.
        "date": _cols("leads", *_LEAD_TIMES),
        "campaign_id": _cols("leads", "campaign_id"),
        "leads_created": _cols("leads", "created_at"),
        "leads_contacted": _cols("leads", "first_contacted_at"),
        "leads_replied": _cols("leads", "first_replied_at"),
        "leads_converted": _cols("leads", "converted_at"),
        "leads_unsubscribed": _cols("leads", "unsubscribed_at"),
    },
    "warmup_analytics": {
        "tenant_id": _cols(_WARMUP, "tenant_id"),
        "date": _cols(_WARMUP, "sent_at"),
        "mailbox_id": _cols(_WARMUP, "mailbox_id"),
        "warmup_sent": _cols(_WARMUP, "sent_at"),
        **{
            name: _cols(_WARMUP, "landed_in", "sent_at")
            for name in (
                "landed_inbox",
                "landed_spam",
                "landed_promotions",
                "landed_missing",
                "pending",
                "inbox_rate",
            )
        },
        "replied": _cols(_WARMUP, "replied", "sent_at"),
        "rescued_from_spam": _cols(_WARMUP, "rescued_from_spam", "sent_at"),
    },
    "billing_analytics": {
        "tenant_id": _cols("invoices", "tenant_id") | _cols("subscriptions", "tenant_id"),
        "date": _cols("invoices", "issued_at", "paid_at", "refunded_at") | _ACTIVE,
        "currency": _cols("invoices", "currency") | _cols("subscriptions", "currency"),
        "invoices_issued": _ISSUED,
        "invoiced_cents": _ISSUED | _cols("invoices", "amount_cents"),
        "paid_cents": _cols("invoices", "amount_cents", "paid_at"),
        "refunded_cents": _cols("invoices", "amount_refunded_cents", "refunded_at"),
        "mrr_cents": _ACTIVE | _cols("subscriptions", "mrr_cents"),
        "active_seats": _ACTIVE | _cols("subscriptions", "seats"),
    },
    "admin_audit_log": {
        "tenant_id": _cols("admin_actions", "tenant_id"),
        "date": _cols("admin_actions", "occurred_at"),
        "action_id": _cols("admin_actions", "id"),
        **{name: _cols("admin_actions", name) for name in _AUDIT_COPIES},
    },
}


def _node(key: list[str]):
    return defs.resolve_asset_graph().get(dg.AssetKey(key))


@pytest.mark.parametrize("rollup", REGISTRY, ids=lambda r: r.name)
def test_column_lineage_derived_from_the_select_matches_the_contract(rollup):
    assert column_lineage(rollup) == CONTRACT_LINEAGE[rollup.name]
    # Every contract column has lineage, on existing OLTP columns of the rollup's sources.
    sources = {t.name: t for t in rollup.sources}
    for column in contract_columns(rollup.table):
        refs = column_lineage(rollup)[column.name]
        assert refs, column.name
        assert all(c in sources[t].c for t, c in refs), refs


@pytest.mark.parametrize("rollup", REGISTRY, ids=lambda r: r.name)
def test_every_olap_column_carries_its_lineage_in_the_asset_metadata(rollup):
    metadata = _node(["analytics", rollup.name]).metadata
    lineage = metadata["dagster/column_lineage"].deps_by_column
    expected = CONTRACT_LINEAGE[rollup.name]
    assert set(lineage) == set(expected)
    for column, deps in lineage.items():
        got = {(d.asset_key.path[-1], d.column_name) for d in deps}
        assert got == expected[column]
        assert all(d.asset_key.path[0] == "oltp" for d in deps)
    # Dagster's open-source UI hides that entry: the column table shows the same in words.
    described = {c.name: c.description for c in metadata["dagster/column_schema"].columns}
    first = sorted(expected["date"])[0]
    assert f"From OLTP: {first[0]}.{first[1]}" in described["date"]


def test_every_asset_links_to_the_file_and_line_that_define_it():
    for node in defs.resolve_asset_graph().asset_nodes:
        refs = node.metadata["dagster/code_references"].code_references
        first = refs[0]
        path = Path(first.file_path)
        assert path.exists(), first
        name = node.key.path[-1]
        line = path.read_text().splitlines()[first.line_number - 1]
        if node.key.path[0] == "analytics":
            assert path.name == f"{name}.py" or "select" in line, (node.key, line)
            assert line.startswith("def select") or line.startswith("def _"), line
        else:
            assert (
                path.name == "tables.py"
                and name in line + path.read_text().splitlines()[first.line_number]
            ), (node.key, line)


def test_every_olap_asset_declares_the_freshness_the_schedules_promise():
    for rollup in REGISTRY:
        node = _node(["analytics", rollup.name])
        policy = node.freshness_policy
        assert type(policy).__name__ == "TimeWindowFreshnessPolicy", node.key
        assert policy.fail_window.to_timedelta().total_seconds() == 3600
    assert _node(["oltp", "emails"]).freshness_policy is None


@pytest.fixture
def observed_oltp(databases) -> str:
    url = databases.create("observe")
    make_oltp(url)
    return url


def _observe(url: str, cursor: str | None) -> dg.SensorResult:
    # The sensor reads OLTP only; Dagster stores what it returns.
    with dg.build_sensor_context(cursor=cursor, resources={"oltp": OltpDatabase(url=url)}) as ctx:
        return source_observation_sensor(ctx)


def test_sources_report_their_row_counts_and_latest_change_only_when_they_move(observed_oltp):
    engine = sa.create_engine(observed_oltp)
    with engine.connect() as conn:
        counts = {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar()
            for t in oltp_metadata.sorted_tables
        }
        latest_email = conn.execute(sa.text("SELECT max(updated_at) FROM emails")).scalar()
    first = _observe(observed_oltp, None)
    seen = {e.asset_key.path[-1]: e.metadata for e in first.asset_events}
    assert set(seen) == set(counts)
    assert {t: m["dagster/row_count"].value for t, m in seen.items()} == counts
    assert seen["emails"]["latest_change"].value == latest_email.timestamp()
    assert seen["emails"]["change_column"].value == "updated_at"
    assert seen["admin_actions"]["change_column"].value == "recorded_at"

    quiet = _observe(observed_oltp, first.cursor)
    assert quiet.asset_events == []

    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE emails SET opened = now() WHERE id = (SELECT min(id) FROM emails)")
        )
        changed_at = conn.execute(sa.text("SELECT max(updated_at) FROM emails")).scalar()
    moved = _observe(observed_oltp, quiet.cursor)
    assert [e.asset_key.path[-1] for e in moved.asset_events] == ["emails"]
    assert moved.asset_events[0].metadata["latest_change"].value == changed_at.timestamp()
    assert json.loads(moved.cursor)["emails"]["latest_change"] == changed_at.isoformat()
    engine.dispose()


def test_an_empty_oltp_is_one_line_not_an_error(databases):
    url = databases.create("empty")
    result = _observe(url, None)
    assert isinstance(result, dg.SkipReason)
    assert "analytics-pipeline demo" in result.skip_message
