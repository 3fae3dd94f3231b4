"""The OLTP mirror against the contract, and the OLAP schema's creation and upgrade checks.

Why: the pipeline's SQL is written against a Core mirror of the product's tables; a drift between
the mirror and the contract, or between an OLAP table and its definition, must fail here and not
in a production run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import SchemaError
from analytics_pipeline.sources.schema import contract_sql
from analytics_pipeline.sources.tables import metadata as oltp_metadata
from analytics_pipeline.warehouse.migrate import upgrade, verify

SHARED_CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "contract" / "oltp_schema.sql"


def test_packaged_contract_is_the_shared_one():
    if not SHARED_CONTRACT.exists():
        pytest.skip(f"no shared contract beside the checkout ({SHARED_CONTRACT})")
    assert contract_sql() == SHARED_CONTRACT.read_text()


def test_mirror_matches_a_database_created_from_the_contract(shared_url):
    engine = sa.create_engine(shared_url)
    inspector = sa.inspect(engine)
    for table in oltp_metadata.sorted_tables:
        actual = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        mirrored = {c.name: c.type for c in table.columns}
        assert set(mirrored) == set(actual), table.name
        for name, type_ in mirrored.items():
            assert type_.compile(engine.dialect) == actual[name].compile(engine.dialect), (
                f"{table.name}.{name}"
            )
    engine.dispose()


def test_upgrade_is_idempotent_and_verify_catches_drift(fresh_url):
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        assert upgrade(conn) == []  # fresh_url was upgraded already: nothing left to do
        conn.execute(sa.text("ALTER TABLE analytics.campaign_analytics DROP COLUMN replied"))
        with pytest.raises(SchemaError, match="campaign_analytics has no column 'replied'"):
            verify(conn)
        conn.execute(sa.text("DROP TABLE analytics.campaign_analytics"))
        assert upgrade(conn) == ["created analytics.campaign_analytics"]
        comment = conn.execute(
            sa.text("SELECT col_description('analytics.campaign_analytics'::regclass, 4)")
        ).scalar()
        assert comment and "Emails sent on the day" in comment
    engine.dispose()


def test_grain_index_treats_null_campaigns_as_equal(fresh_url):
    engine = sa.create_engine(fresh_url)
    insert = sa.text(
        "INSERT INTO analytics.campaign_analytics (tenant_id, date, campaign_id, sent, delivered, "
        "opened_tracked, clicked_tracked, replied, bounced, unsubscribed, spam_complaints) "
        "VALUES ('t', '2026-01-01', NULL, 1, 0, 0, 0, 0, 0, 0, 0)"
    )
    with engine.begin() as conn:
        conn.execute(insert)
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(insert)
    engine.dispose()
