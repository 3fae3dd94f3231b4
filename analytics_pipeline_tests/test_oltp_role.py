"""The product's database is read-only for the pipeline because PostgreSQL says so.

Why (issue 11): read-only transactions are a client-side flag. Through `OltpDatabase` a write
committed via `SET TRANSACTION READ WRITE` as the first statement of `read_snapshot()`, via
`exec_driver_sql("COMMIT; INSERT ...")`, and via the public engine. Under the documented set-up
(docs/OPERATIONS.md, "What the OLTP role may do", run here verbatim) PostgreSQL must refuse all
three; the preflight must catch a role that can write; and the embedded default must use such a
role for OLTP, and a writer that cannot write the product's tables for OLAP.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.resources import oltp_role
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline_tests.testbed import ADMIN_URL, make_oltp

ROOT = Path(__file__).resolve().parents[1]
INSERT = "INSERT INTO tenants (id, name, status) VALUES ('intruder', 'x', 'active')"


def documented_script() -> str:
    text = (ROOT / "docs" / "OPERATIONS.md").read_text()
    section = text.split("### What the OLTP role may do", 1)[1]
    return re.search(r"```sql\n(.*?)\n```", section, re.S).group(1)


def _tenants(url: str) -> list[str]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM tenants ORDER BY id")).scalars().all()
    engine.dispose()
    return ids


@pytest.fixture(autouse=True)
def _forget_checked_urls() -> Iterator[None]:
    # Each test decides for itself what the preflight sees.
    oltp_role.forget_checked()
    yield
    oltp_role.forget_checked()


class Role:
    """A login role on the test server, made by a script, dropped afterwards."""

    def __init__(self, db_url: str, script: str, name: str) -> None:
        self.name = name
        self.db_url = db_url
        self.url = sa.make_url(db_url).set(username=name).render_as_string(hide_password=False)
        engine = sa.create_engine(db_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(script)
        engine.dispose()

    def drop(self) -> None:
        engine = sa.create_engine(self.db_url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{self.name}"')
        engine.dispose()
        admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{self.name}"')
        admin.dispose()


@pytest.fixture(scope="module")
def source_url(databases) -> str:
    url = databases.create("role")
    make_oltp(url)
    return url


@pytest.fixture(scope="module")
def documented_reader(source_url) -> Iterator[Role]:
    """The role exactly as docs/OPERATIONS.md creates it (its name and database substituted)."""
    name = f"ap_reader_{uuid.uuid4().hex[:8]}"
    database = sa.make_url(source_url).database
    script = (
        documented_script()
        .replace("analytics_reader", name)
        .replace("DATABASE outreach", f'DATABASE "{database}"')
    )
    role = Role(source_url, script, name)
    yield role
    role.drop()


def _write_probes(db: OltpDatabase) -> dict[str, Exception | None]:
    """The three ways in that committed writes before; each one's error (None: it wrote)."""

    def snapshot_read_write() -> None:
        with db.read_snapshot() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ WRITE")
            conn.exec_driver_sql(INSERT)

    def commit_then_insert() -> None:
        with db.read_snapshot() as conn:
            # BEGIN READ WRITE also undoes the role's default_transaction_read_only: only
            # the privileges are left to refuse it.
            conn.exec_driver_sql("COMMIT; BEGIN READ WRITE; " + INSERT + "; COMMIT")

    def public_engine() -> None:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("SET TRANSACTION READ WRITE")
            conn.exec_driver_sql(INSERT)
            conn.commit()

    outcome: dict[str, Exception | None] = {}
    for probe in (snapshot_read_write, commit_then_insert, public_engine):
        try:
            probe()
            outcome[probe.__name__] = None
        except sa.exc.DBAPIError as exc:
            outcome[probe.__name__] = exc
    db.dispose()
    return outcome


def test_postgresql_refuses_every_write_of_the_documented_role(source_url, documented_reader):
    before = _tenants(source_url)
    outcome = _write_probes(OltpDatabase(url=documented_reader.url))
    for probe, error in outcome.items():
        assert error is not None, f"{probe}: the write went through"
        assert getattr(error.orig, "sqlstate", None) == "42501", f"{probe}: {error}"
        assert "permission denied for table tenants" in str(error)
    assert _tenants(source_url) == before, "nothing was written"


def test_the_probes_do_write_as_a_role_that_may(databases):
    """The control: the same probes as the superuser commit (so the test above can fail)."""
    url = databases.create("role_control")
    make_oltp(url, size=None)
    outcome = _write_probes(OltpDatabase(url=url))
    # The probe that commits first succeeds, then the next ones hit the primary key: each was
    # a real write.
    assert outcome["snapshot_read_write"] is None
    assert _tenants(url) == ["intruder"]


def test_the_preflight_refuses_a_writing_role_in_production_and_warns_elsewhere(
    source_url, documented_reader, caplog, monkeypatch
):
    superuser = OltpDatabase(url=source_url)
    monkeypatch.setenv("ANALYTICS_ENV", "production")
    with pytest.raises(ConfigurationError) as refused:
        superuser.preflight()
    assert "can write the product's tables: it is a superuser" in str(refused.value)
    assert "What the OLTP role may do" in str(refused.value)
    OltpDatabase(url=documented_reader.url).preflight()  # the documented role passes

    monkeypatch.setenv("ANALYTICS_ENV", "development")
    caplog.set_level(logging.WARNING, logger=oltp_role.__name__)
    superuser.preflight()
    assert any("it is a superuser" in r.getMessage() for r in caplog.records)
    superuser.dispose()


def test_the_preflight_names_a_table_the_role_may_write(source_url, monkeypatch):
    name = f"ap_writer_{uuid.uuid4().hex[:8]}"
    role = Role(
        source_url,
        f'CREATE ROLE "{name}" LOGIN; GRANT USAGE ON SCHEMA public TO "{name}"; '
        f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{name}"; '
        f'GRANT DELETE ON public.emails TO "{name}"',
        name,
    )
    try:
        monkeypatch.setenv("ANALYTICS_ENV", "production")
        db = OltpDatabase(url=role.url)
        with pytest.raises(ConfigurationError, match=rf"{name}.*it may write emails"):
            db.preflight()
        db.dispose()
    finally:
        role.drop()


def test_the_embedded_default_reads_oltp_as_a_role_that_cannot_write(tmp_path, monkeypatch):
    """No URL set: OLTP is read as analytics_reader, OLAP written as analytics_writer; neither
    can write the product's tables (loaded by the superuser, as the demo does)."""
    from analytics_pipeline import runtime
    from analytics_pipeline.embedded.server import EmbeddedPostgres
    from analytics_pipeline.warehouse.migrate import upgrade_database

    for var in ("OLTP_DATABASE_URL", "OLAP_DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANALYTICS_PIPELINE_HOME", str(tmp_path))
    try:
        with runtime.environment(need_dagster_home=False) as settings:
            assert settings.oltp_url.username == "analytics_reader"
            assert settings.olap_url.username == "analytics_writer"
            assert settings.oltp_loader_url.username == "postgres"
            make_oltp(settings.oltp_loader_url.render_as_string(hide_password=False))
            assert upgrade_database(settings.olap_url), "the writer creates the OLAP schema"
            for url in (settings.oltp_url, settings.olap_url):
                rendered = url.render_as_string(hide_password=False)
                outcome = _write_probes(OltpDatabase(url=rendered))
                assert all(e is not None for e in outcome.values()), (url.username, outcome)
                engine = sa.create_engine(url)
                with engine.connect() as conn:
                    assert oltp_role.write_access(conn)[1] == [], url.username
                engine.dispose()
    finally:
        EmbeddedPostgres(tmp_path / "postgres").force_stop()
