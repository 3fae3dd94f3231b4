"""Erasing a tenant from a populated pipeline: OLAP, the audit log, Dagster's history, the outbox.

Why: a tenant's erasure is a legal promise. After it, no OLAP row and no row of the Dagster
database may name the tenant or hold its data (searched as text, whole rows, every table), while
every other tenant's rows and partitions stay exactly as they were; it must refuse when it would
be undone (tenant still active, a run of it queued), say so when repeated, leave a record, and
let a later tenant with the same id start from nothing. And the raw SQL it needs is only safe on
the Dagster schema it was written for: the guard test fails when an upgrade changes it.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError, TenantLifecycleError
from analytics_pipeline.governance.erasure import erase_tenant, oltp_status
from analytics_pipeline.governance.pseudonym import Pseudonymizer
from analytics_pipeline.instance import dagster_schema, forget
from analytics_pipeline.partitions import (
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    add_tenants,
    range_tags,
)
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline_tests.testbed import ADMIN_URL, TEST_SIZE

ROOT = Path(__file__).resolve().parents[1]
GONE = "tenant-002"
OTHERS = ("tenant-001", "tenant-003")
PSEUDO = Pseudonymizer("a-test-salt-of-enough-length")


def _d(day: int) -> dt.date:
    return dt.date(2026, 3, day)


@pytest.fixture
def pipeline(databases, tmp_path, monkeypatch):
    """Demo OLTP with the OLAP schema beside it, and a PostgreSQL-backed Dagster instance.

    One database for OLTP and OLAP, as the definitions' OLAP resource follows
    OLTP_DATABASE_URL unless OLAP_DATABASE_URL was set when they were first imported; the
    searches below read the `analytics` schema (OLTP is the product's, not ours to erase).
    """
    oltp_url = olap_url = databases.create_demo("erase")
    dagster_url = sa.make_url(databases.create("erase_dagster")).set(
        drivername="postgresql+psycopg2"
    )
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_url.render_as_string(hide_password=False))
    shutil.copyfile(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    from analytics_pipeline.definitions import defs

    olap = OlapDatabase(url=olap_url)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        yield {
            "oltp_url": oltp_url,
            "olap_url": olap_url,
            "dagster_db": dagster_url.database,
            "instance": instance,
            "olap": olap,
            "job": defs.resolve_job_def("refresh_analytics"),
            "outbox": tmp_path / "outbox.sqlite3",
        }
    olap.dispose()


def _run(p, **kwargs) -> str:
    result = p["job"].execute_in_process(instance=p["instance"], **kwargs)
    assert result.success
    return result.run_id


def _populate(p) -> None:
    """Real runs of every shape: the tenant inside a range, alone, and at a range's start."""
    add_tenants(p["instance"], TEST_SIZE.tenant_ids())
    _run(p, tags=range_tags(TenantDay("tenant-001", _d(20)), TenantDay("tenant-003", _d(21))))
    _run(p, partition_key=str(TenantDay(GONE, _d(25)).partition_key()))
    # The run's preview shows the first partition (tenant-002's rows) on tenant-003's too.
    _run(p, tags=range_tags(TenantDay(GONE, _d(28)), TenantDay("tenant-003", _d(28))))
    _run(p, partition_key=str(TenantDay("tenant-001", _d(25)).partition_key()))
    outbox = Outbox(p["outbox"])
    outbox.put([_message(t) for t in (GONE, GONE, "tenant-001")], "PostHog unreachable")
    outbox.reject([_message(GONE)], "HTTP 400")
    outbox.close()


def _message(tenant_id: str) -> Message:
    return Message(
        uuid=str(uuid.uuid4()),
        kind="capture",
        event="infra_latency",
        distinct_id="analytics_pipeline",
        properties={"tenant_id": tenant_id, "operation": "campaign_analytics"},
        groups={"tenant": tenant_id},
        timestamp=time.time(),
    )


def _rows_quoting(url: str, needle: str) -> dict[str, int]:
    """Per table of the `analytics` schema, rows whose whole text contains `needle`."""
    engine = sa.create_engine(url)
    found = {}
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE "
                "table_type = 'BASE TABLE' AND table_schema = 'analytics'"
            )
        ).all()
        for schema, name in tables:
            t = sa.table(name, schema=schema)
            n = conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(sa.cast(sa.literal_column(f'"{name}"'), sa.Text).contains(needle))
            ).scalar_one()
            if n:
                found[f"{schema}.{name}"] = n
    engine.dispose()
    return found


def _olap_checksums(url: str, tenants: tuple[str, ...]) -> dict[str, str]:
    """Per table, an md5 over the tenants' whole rows (bookkeeping columns included)."""
    engine = sa.create_engine(url)
    sums = {}
    with engine.connect() as conn:
        for r in REGISTRY:
            sums[r.name] = conn.execute(
                sa.text(
                    f"SELECT md5(string_agg(t::text, E'\\n' ORDER BY t::text)) "  # noqa: S608
                    f"FROM analytics.{r.name} t WHERE tenant_id = ANY(:tenants)"
                ),
                {"tenants": list(tenants)},
            ).scalar_one()
    engine.dispose()
    return sums


def _materialized(instance: dg.DagsterInstance, tenants: tuple[str, ...]) -> dict[str, set]:
    """Per asset: (partition, storage id) of the latest materialization of those tenants."""
    out = {}
    for r in REGISTRY:
        key = dg.AssetKey(["analytics", r.name])
        records = instance.fetch_materializations(key, limit=1000).records
        out[r.name] = {
            (rec.partition_key, rec.storage_id)
            for rec in records
            if rec.partition_key.split("|")[1] in tenants
        }
    return out


def _audit_ips(url: str, tenant_id: str) -> set[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ips = conn.execute(
            sa.text(
                "SELECT DISTINCT host(ip_address) FROM analytics.admin_audit_log WHERE "
                "tenant_id = :t AND ip_address IS NOT NULL EXCEPT SELECT host(ip_address) FROM "
                "analytics.admin_audit_log WHERE tenant_id <> :t AND ip_address IS NOT NULL"
            ),
            {"t": tenant_id},
        ).scalars()
        return set(ips)


def _sql(url: str, statement: str, **params) -> list:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        result = conn.execute(sa.text(statement), params)
        rows = result.all() if result.returns_rows else []
    engine.dispose()
    return rows


def _erase(p, requested_by: str = "dpo@example.com"):
    oltp = OltpDatabase(url=p["oltp_url"])
    with oltp.read_snapshot() as conn:
        status = oltp_status(conn, GONE)
    oltp.dispose()
    return erase_tenant(
        tenant_id=GONE,
        requested_by=requested_by,
        olap=p["olap"],
        instance=p["instance"],
        oltp_status=status,
        outbox_path=p["outbox"],
        pseudonymizer=PSEUDO,
    )


def _pg_dump(database: str) -> str:
    """The whole Dagster database as text (pg_dump --data-only), as an auditor would search it."""
    url = sa.make_url(p_admin_url())
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 5432),
            "-U",
            url.username or "postgres",
            database,
        ],
        capture_output=True,
        text=True,
        check=True,
        env={"PGPASSWORD": url.password or "", "PATH": "/usr/bin:/bin"},
    )
    return dump.stdout


def p_admin_url() -> str:

    return ADMIN_URL


def test_erasure_forgets_the_tenant_everywhere_and_nothing_else(pipeline):
    p = pipeline
    _populate(p)
    instance = p["instance"]
    assert _rows_quoting(p["olap_url"], GONE), "the tenant must have OLAP rows to erase"
    dump = _pg_dump(p["dagster_db"])
    ips = _audit_ips(p["olap_url"], GONE)
    assert GONE in dump and ips & set(re.findall(r"203\.0\.113\.\d+", dump)), (
        "the tenant's id and its audit rows' addresses (materialization previews) are in Dagster"
    )
    audit_rows = _sql(
        p["olap_url"], "SELECT count(*) FROM analytics.admin_audit_log WHERE tenant_id = :t", t=GONE
    )[0][0]
    before_olap = _olap_checksums(p["olap_url"], OTHERS)
    before_dagster = _materialized(instance, OTHERS)
    replace_rows = {
        r.name: n
        for r, (n,) in (
            (
                r,
                _sql(
                    p["olap_url"],
                    f"SELECT count(*) FROM analytics.{r.name} WHERE tenant_id = :t",  # noqa: S608
                    t=GONE,
                )[0],
            )
            for r in REGISTRY
            if r.write_mode == "replace"
        )
    }

    # Refused while the product still serves the tenant: the tenant sensor would rebuild it.
    with pytest.raises(TenantLifecycleError, match="is 'active' in OLTP"):
        _erase(p)
    _sql(p["oltp_url"], "UPDATE tenants SET status = 'offboarded' WHERE id = :t", t=GONE)
    # Refused while a run of the tenant is in progress.
    queued = instance.add_run(
        dg.DagsterRun(
            job_name="refresh_analytics",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"analytics/tenant": GONE},
        )
    )
    with pytest.raises(TenantLifecycleError, match="queued or running"):
        _erase(p)
    assert _olap_checksums(p["olap_url"], (GONE,)) != _olap_checksums(p["olap_url"], ("none",))
    instance.delete_run(queued.run_id)

    result = _erase(p)
    assert not result.already_erased
    assert result.rows_removed["olap"] == replace_rows
    assert result.rows_removed["admin_audit_log_pseudonymised"] == audit_rows
    assert result.rows_removed["outbox"] == 3
    assert result.rows_removed["dagster"]["runs_deleted"] == 1

    # Nothing names the tenant or holds its data: OLAP rows as text, the Dagster dump.
    assert _rows_quoting(p["olap_url"], GONE) == {}
    assert _sql(
        p["olap_url"],
        "SELECT count(*) FROM analytics.admin_audit_log WHERE host(ip_address) = ANY(:ips)",
        ips=list(ips),
    ) == [(0,)]
    dump = _pg_dump(p["dagster_db"])
    assert GONE not in dump
    for ip in ips:
        # Whole addresses only: 203.0.113.5 is not in 203.0.113.57.
        assert not re.search(rf"(?<![\d.]){re.escape(ip)}(?![\d])", dump), (
            f"{ip} of the erased tenant's preview is still in Dagster"
        )
    # The audit log keeps the record of what was done, pseudonymised.
    kept = _sql(
        p["olap_url"],
        "SELECT count(*), count(ip_address), bool_and(actor_id LIKE 'actor:%'), "
        "bool_and(details = '{}') FROM analytics.admin_audit_log WHERE tenant_id = :t",
        t=PSEUDO.tenant(GONE),
    )
    assert kept == [(audit_rows, 0, True, True)]
    # Everyone else is untouched.
    assert _olap_checksums(p["olap_url"], OTHERS) == before_olap
    assert _materialized(instance, OTHERS) == before_dagster
    assert instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME) == list(OTHERS)
    outbox = Outbox(p["outbox"])
    assert outbox.count() == 1 and outbox.rejected() == []
    outbox.close()
    # The record: hashed id, who, when, how much; closed.
    records = _sql(
        p["olap_url"],
        "SELECT tenant_hash, requested_by, completed_at IS NOT NULL, rows_removed "
        "FROM analytics.erasures",
    )
    assert [r[:3] for r in records] == [(PSEUDO.tenant(GONE), "dpo@example.com", True)]
    assert records[0][3]["olap"] == replace_rows

    # Again: a no-op that says so, and no second record.
    again = _erase(p, requested_by="someone-else")
    assert again.already_erased and again.erasure_id == result.erasure_id
    assert "already erased" in again.summary(GONE)
    assert len(_sql(p["olap_url"], "SELECT 1 FROM analytics.erasures")) == 1

    # A new tenant with the same id starts from nothing.
    add_tenants(instance, [GONE])
    for r in REGISTRY:
        done = instance.get_materialized_partitions(dg.AssetKey(["analytics", r.name]))
        assert not [k for k in done if GONE in k], r.name
    run_id = _run(p, partition_key=str(TenantDay(GONE, _d(30)).partition_key()))
    rows = _sql(
        p["olap_url"],
        "SELECT DISTINCT date, refreshed_by_run FROM analytics.campaign_analytics "
        "WHERE tenant_id = :t",
        t=GONE,
    )
    assert rows == [(_d(30), run_id)]


def test_dagster_schema_is_the_one_the_eraser_knows(pipeline):
    """Guard: fails when a Dagster upgrade adds, drops or changes a table or text column. The
    project's instance is on the compact layout (instance/compact_events.py): Dagster's tables
    with `event_logs` and `asset_event_tags` under views."""
    engine = sa.create_engine(sa.make_url(p_admin_url()).set(database=pipeline["dagster_db"]))
    with engine.connect() as conn:
        live = dagster_schema.live_text_columns(conn)
        layout = dagster_schema.verify_known_schema(conn)
    engine.dispose()
    assert layout is dagster_schema.COMPACT_TEXT_COLUMNS
    assert live == {t: tuple(sorted(c)) for t, c in dagster_schema.COMPACT_TEXT_COLUMNS.items()}


def test_tenant_quotes_are_whole_ids_and_previews_go():
    """'acme' must not touch 'acme-2'; a metadata table holding the tenant's rows is dropped."""
    text = (
        '{"a": "acme 2026-03-01; acme-2 2026-03-01", "p": {"__class__": "TableMetadataEntryData",'
        ' "records": [{"data": {"tenant_id": "acme", "x": 1}}]}, "k": "2026-03-01|acme"}'
    )
    out = forget.scrub_text(text, "acme", "erased:ff")
    assert '"erased:ff 2026-03-01; acme-2 2026-03-01"' in out
    assert '"2026-03-01|erased:ff"' in out
    assert forget.REMOVED_ROWS in out and '"x": 1' not in out


def test_pseudonyms_need_a_real_salt(monkeypatch):
    monkeypatch.setenv("ANALYTICS_PSEUDONYM_SALT", "short")
    with pytest.raises(ConfigurationError, match="ANALYTICS_PSEUDONYM_SALT"):
        Pseudonymizer.from_env()
    assert PSEUDO.tenant("acme") == PSEUDO.tenant("acme") != Pseudonymizer("x" * 16).tenant("acme")
    assert ":" in PSEUDO.tenant("acme")  # never a valid tenant id
