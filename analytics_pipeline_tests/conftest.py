"""Shared fixtures: throwaway databases on the real PostgreSQL server, demo data, resources,
Dagster instances, and the one `analytics-pipeline dev` server the UI tests share.

Every test session creates its own databases (random names) on the server given by
ANALYTICS_TEST_PG_URL (default: the local server on 127.0.0.1:5432) and drops them at the end, so
concurrent runs never collide. Plain helpers and constants live in testbed.py and dev_server.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

# In-process tests use fixed 2026 dates: pin the date dimension's start before anything defines
# the partitions, whatever a developer's own demo recorded in ./.analytics_pipeline (see
# analytics_pipeline/history.py). Commands the tests run find theirs from their data.
os.environ.setdefault("ANALYTICS_PARTITIONS_START", "2024-01-01")

from analytics_pipeline.partitions import TENANTS_PARTITIONS_NAME
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline_tests.dev_server import (
    DEV_DEMO,
    LATE_ASSET,
    DevServer,
)
from analytics_pipeline_tests.fake_posthog import FakePostHog
from analytics_pipeline_tests.testbed import (
    ROOT,
    Databases,
    cli_env,
    make_olap,
    make_oltp,
    run_cli,
    truncate_olap,
)


@pytest.fixture(scope="session")
def databases() -> Iterator[Databases]:
    dbs = Databases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(scope="session")
def shared_url(databases: Databases) -> str:
    """One database holding demo OLTP data and the OLAP schema. Tests must not change OLTP rows."""
    url = databases.create("shared")
    make_oltp(url, edge_cases=True)
    make_olap(url)
    return url


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
def oltp_url(databases: Databases) -> str:
    """A database of its own with the demo's OLTP rows and the OLAP schema: tests may change it."""
    return databases.create_demo("auto")


@pytest.fixture(scope="module")
def instance(databases: Databases, tmp_path_factory: pytest.TempPathFactory):
    """A Dagster instance stored in PostgreSQL, configured by the project's dagster.yaml; one per
    module that uses it."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copyfile(ROOT / "dagster.yaml", home / "dagster.yaml")
    mp = pytest.MonkeyPatch()
    mp.setenv("DAGSTER_PG_URL", databases.create_for_dagster("dagster"))
    try:
        with dg.DagsterInstance.from_config(str(home)) as inst:
            yield inst
    finally:
        mp.undo()


@pytest.fixture
def clean_instance(instance: dg.DagsterInstance) -> dg.DagsterInstance:
    """`instance` with no tenant registered as a partition."""
    for key in instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME):
        instance.delete_dynamic_partition(TENANTS_PARTITIONS_NAME, key)
    return instance


@pytest.fixture
def fresh_instance_home(
    databases: Databases, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str], tuple[str, Path]]:
    """A factory: `(dagster_yaml, name)` -> (database URL, home) of a Dagster instance of that
    yaml on a new database of its own (DAGSTER_PG_URL points at it for the rest of the test)."""

    def make(yaml: str, name: str) -> tuple[str, Path]:
        url = databases.create(name)
        monkeypatch.setenv(
            "DAGSTER_PG_URL",
            sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False),
        )
        home = tmp_path / name
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml)
        return url, home

    return make


@pytest.fixture
def fresh_url(databases: Databases) -> str:
    """A database of its own with the OLTP schema (no rows) and the OLAP schema."""
    url = databases.create("fresh")
    make_oltp(url, size=None)
    make_olap(url)
    return url


# -- `analytics-pipeline dev`, shared -------------------------------------------------------------


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


@pytest.fixture(scope="session")
def dev_server() -> Iterator[DevServer]:
    """One `analytics-pipeline dev` on demo data (DEV_DEMO) for every test that needs the UI.

    Stopped by the test marked `stops_dev_server`, else at the end of the session; either way
    no server is left running. Its home is a folder of its own in the system's temporary
    folder, not pytest's: another pytest session starting meanwhile resets the permissions of
    pytest's root folder (the embedded server's user then cannot reach its data) and prunes old
    session folders, and this server lives for several tests.
    """
    home = Path(tempfile.mkdtemp(prefix="analytics-pipeline-dev-"))
    try:
        demo = run_cli(["demo", *DEV_DEMO], cli_env(home))
        assert demo.returncode == 0, demo.stderr
        server = DevServer(home)
        try:
            server.wait_until_serving()
            server.keep_late(*LATE_ASSET)
            yield server
        finally:
            server.stop()
            embedded = server.embedded()
            if embedded.is_running():
                embedded.force_stop()
                pytest.fail(f"the embedded server outlived `dev`\n{server.log_tail()}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
