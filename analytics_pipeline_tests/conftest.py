"""Shared fixtures: throwaway databases on the real PostgreSQL server, demo data, resources.

Every test session creates its own databases (random names) on the server given by
ANALYTICS_TEST_PG_URL (default: the local server on 127.0.0.1:5432) and drops them at the end, so
concurrent runs never collide.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

# In-process tests use fixed 2026 dates: pin the date dimension's start before anything defines
# the partitions, whatever a developer's own demo recorded in ./.analytics_pipeline (see
# analytics_pipeline/history.py). Commands the tests run find theirs from their data.
os.environ.setdefault("ANALYTICS_PARTITIONS_START", "2024-01-01")

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.demo.loader import load_demo
from analytics_pipeline.embedded.server import DAGSTER_DATABASE, EmbeddedPostgres
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.sources.schema import create_oltp_schema
from analytics_pipeline.warehouse.migrate import upgrade
from analytics_pipeline_tests.fake_posthog import FakePostHog, free_port

ADMIN_URL = os.environ.get(
    "ANALYTICS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)

# Fixed dates, so that figures do not depend on the day the suite runs.
# Tenants tenant-001..003 (plus 'quiet', which has no activity), 2026-03-12..2026-03-31.
TEST_SIZE = DemoSize(tenants=3, days=20, emails_per_day=120, seed=11, end_date=dt.date(2026, 3, 31))


class Databases:
    """Creates and drops databases on the test server."""

    def __init__(self) -> None:
        self.admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self, purpose: str) -> str:
        name = f"ap_test_{purpose}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
        self.created.append(name)
        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def create_for_dagster(self, purpose: str) -> str:
        """A database for a Dagster instance, as DAGSTER_PG_URL must name it (psycopg2)."""
        url = sa.make_url(self.create(purpose)).set(drivername="postgresql+psycopg2")
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text('DROP DATABASE IF EXISTS "' + name + '" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.drop_all()


EDGE_CASES = Path(__file__).with_name("edge_cases.sql")


def terminate(proc: subprocess.Popen, timeout: float = 60) -> int:
    """SIGTERM a child as a user or supervisor would; kill it (and fail) if it hangs.

    The child must have been started with start_new_session=True: whatever it left behind in
    its process group (Dagster's code servers, say) is killed too, so no test leaves processes.
    """
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def start_daemon(env: dict[str, str]) -> subprocess.Popen:
    """`dagster-daemon run` on the project's workspace, in a session of its own (for
    terminate())."""
    root = Path(__file__).resolve().parents[1]
    daemon = str(Path(sys.executable).with_name("dagster-daemon"))
    return subprocess.Popen(
        [daemon, "run", "-w", str(root / "workspace.yaml")],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def make_oltp(url: str, size: DemoSize | None = TEST_SIZE, edge_cases: bool = False) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if size is None:
            create_oltp_schema(conn)
        else:
            load_demo(conn, size)
        if edge_cases:
            conn.exec_driver_sql(EDGE_CASES.read_text())
    engine.dispose()


def make_olap(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        upgrade(conn)
    engine.dispose()


@pytest.fixture(scope="session")
def shared_url(databases: Databases) -> str:
    """One database holding demo OLTP data and the OLAP schema. Tests must not change OLTP rows."""
    url = databases.create("shared")
    make_oltp(url, edge_cases=True)
    make_olap(url)
    return url


def truncate_olap(db: OlapDatabase) -> None:
    with db.transaction() as conn:
        for rollup in REGISTRY:
            conn.execute(sa.delete(rollup.table))


@pytest.fixture(scope="session")
def separate_olap_url(databases: Databases) -> str:
    """An OLAP-only database, for the cross-database (COPY) path."""
    url = databases.create("olap")
    make_olap(url)
    return url


@pytest.fixture
def oltp(shared_url: str) -> Iterator[OltpDatabase]:
    db = OltpDatabase(url=shared_url)
    yield db
    db.dispose()


@pytest.fixture
def olap(shared_url: str) -> Iterator[OlapDatabase]:
    db = OlapDatabase(url=shared_url)
    truncate_olap(db)
    yield db
    db.dispose()


@pytest.fixture
def defs(monkeypatch: pytest.MonkeyPatch, shared_url: str, olap: OlapDatabase):
    """The project's Definitions, reading OLTP (and OLAP) from the shared test database, with
    its OLAP tables emptied (the `olap` fixture)."""
    monkeypatch.setenv("OLTP_DATABASE_URL", shared_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    from analytics_pipeline.definitions import defs

    return defs


@pytest.fixture
def fresh_url(databases: Databases) -> str:
    """A database of its own with the OLTP schema (no rows) and the OLAP schema."""
    url = databases.create("fresh")
    make_oltp(url, size=None)
    make_olap(url)
    return url


# -- `analytics-pipeline dev`, shared -------------------------------------------------------------

# The demo behind the dev server: tenant-001 and tenant-002, the three days up to yesterday (UTC)
# and today, as `analytics-pipeline demo` does by default: its date dimension then starts on the
# first day, and the catalog of the fresh demo has no partition missing (a session that crosses
# midnight UTC sees one new, unmaterialized day). The GraphQL client test (test_dev_command)
# refreshes tenant-001 on the last two days; the browser test (test_ui_browser) materializes
# tenant-002 on the first, so neither run rewrites the other's rows.
DEV_LAST_DAY = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
DEV_DAYS = [DEV_LAST_DAY - dt.timedelta(days=n) for n in (2, 1, 0)]
DEV_DEMO = ["--tenants", "2", "--days", "3", "--emails-per-day", "30"]
ASSET_NODES = "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stops_dev_server: stops the shared dev server; runs after its other users"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests that share the dev server back to back, those that stop it last.

    So the server (webserver, daemon, embedded PostgreSQL) lives only as long as its users need
    it, and a test that stops it never runs before another one that needs it running.
    """
    users = [item for item in items if "dev_server" in getattr(item, "fixturenames", ())]
    if not users:
        return
    first = items.index(users[0])
    user_ids = {id(item) for item in users}
    others = [item for item in items if id(item) not in user_ids]
    users.sort(key=lambda item: item.get_closest_marker("stops_dev_server") is not None)
    items[:] = others[:first] + users + others[first:]


@pytest.fixture
def posthog_server() -> Iterator[FakePostHog]:
    """A PostHog stand-in on 127.0.0.1 (fake_posthog.py), stopped after the test."""
    server = FakePostHog()
    yield server
    server.close()


class DevServer:
    """`analytics-pipeline dev` (webserver and daemon) on the embedded PostgreSQL of `home`."""

    def __init__(self, home: Path) -> None:
        from analytics_pipeline_tests.test_cli import CLI, ROOT, _env

        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / "dev.log"
        self.exit_code: int | None = None
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*CLI, "dev", "--", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT,
            # Default settings, as a user runs it: the demo loaded OLTP moments ago, and the
            # late-data sensor must not take that load for late data (it starts watching at
            # its first tick), or it would re-stamp the rows the tests check.
            env=_env(home),
            # To a file, not a pipe: nobody reads a pipe while the server runs, and a full one
            # would block it.
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_until_serving(self, timeout: float = 120) -> None:
        """Until the UI answers with the project's assets (or fail with the log's tail)."""
        deadline = time.monotonic() + timeout
        nodes = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                nodes = self.graphql(ASSET_NODES)["data"]["assetNodes"]
                if nodes:
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(1)
        assert nodes, f"the UI did not answer on port {self.port}\n{self.log_tail()}"

    def embedded(self) -> EmbeddedPostgres:
        return EmbeddedPostgres(self.home / "postgres")

    def record_materialization(self, key: list[str], partition: str, at: dt.datetime) -> None:
        """Store, in the server's instance, a materialization of `key` that happened `at`: what
        a refresh that stopped running leaves as the asset's latest (the freshness tests)."""
        from dagster import AssetKey, AssetMaterialization, DagsterInstance
        from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
        from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID

        embedded = self.embedded()
        embedded.start()  # attaches as a guest: the dev command owns the server
        url = embedded.url(DAGSTER_DATABASE)
        home = self.home / "test_instance"
        home.mkdir(exist_ok=True)
        (home / "dagster.yaml").write_text(
            "".join(
                f"{kind}:\n  module: analytics_pipeline.instance.storage\n  class: {cls}\n"
                f"  config:\n    postgres_url: {json.dumps(url)}\n"
                for kind, cls in (
                    ("run_storage", "ProjectRunStorage"),
                    ("event_log_storage", "PooledPostgresEventLogStorage"),
                    ("schedule_storage", "ProjectScheduleStorage"),
                )
            )
        )
        materialization = AssetMaterialization(asset_key=AssetKey(key), partition=partition)
        with DagsterInstance.from_config(str(home)) as instance:
            instance.report_dagster_event(
                run_id=RUNLESS_RUN_ID,
                dagster_event=DagsterEvent(
                    event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
                    event_specific_data=StepMaterializationData(materialization),
                    job_name=RUNLESS_JOB_NAME,
                ),
                timestamp=at.timestamp(),
            )

    def log_tail(self, lines: int = 60) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "--- dev log (last lines) ---\n" + "\n".join(text[-lines:])

    def stop(self) -> int:
        """SIGTERM, as a user or supervisor would; once (later calls return the same code)."""
        if self.exit_code is None:
            try:
                self.exit_code = terminate(self.proc)
            finally:
                self._log.close()
        return self.exit_code


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    """One `analytics-pipeline dev` on demo data (DEV_DEMO) for every test that needs the UI.

    Stopped by the test marked `stops_dev_server`, else at the end of the session; either way
    no server is left running. Its home is a folder of its own in the system's temporary
    folder, not pytest's: another pytest session starting meanwhile resets the permissions of
    pytest's root folder (the embedded server's user then cannot reach its data) and prunes old
    session folders, and this server lives for several tests.
    """
    from analytics_pipeline_tests.test_cli import _env, _run

    home = Path(tempfile.mkdtemp(prefix="analytics-pipeline-dev-"))
    try:
        demo = _run(["demo", *DEV_DEMO], _env(home))
        assert demo.returncode == 0, demo.stderr
        server = DevServer(home)
        try:
            server.wait_until_serving()
            yield server
        finally:
            server.stop()
            embedded = server.embedded()
            if embedded.is_running():
                embedded.force_stop()
                pytest.fail(f"the embedded server outlived `dev`\n{server.log_tail()}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
