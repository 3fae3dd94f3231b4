"""What the test modules share that is not a fixture: the fixed demo size, the test server's
databases, and the project's commands run as subprocesses.

Test modules import from here (and from the other support modules: oracle, replica,
celery_workers, fake_posthog), never from conftest.py or from one another; conftest.py builds its
fixtures on these.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.demo.generator import DemoSize
from analytics_pipeline.demo.loader import load_demo
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.sources.schema import create_oltp_schema
from analytics_pipeline.warehouse.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = os.environ.get(
    "ANALYTICS_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
EDGE_CASES = Path(__file__).with_name("edge_cases.sql")

# Fixed dates, so that figures do not depend on the day the suite runs.
# Tenants tenant-001..003 (plus 'quiet', which has no activity), 2026-03-12..2026-03-31.
TEST_SIZE = DemoSize(tenants=3, days=20, emails_per_day=120, seed=11, end_date=dt.date(2026, 3, 31))

# The tags of a run over a range of partitions.
START, END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"

T = TypeVar("T")


# -- Databases on the test server ---------------------------------------------------------------


# Dagster's stock dagster-postgres storage: the baseline the project's storage is compared with.
STOCK_DAGSTER_YAML = """
storage:
  postgres:
    postgres_url:
      env: DAGSTER_PG_URL
telemetry:
  enabled: false
"""


def make_oltp(url: str, size: DemoSize | None = TEST_SIZE, edge_cases: bool = False) -> None:
    """The OLTP schema in `url`, with the demo's rows of `size` (None: no rows) and, if asked,
    the edge cases of edge_cases.sql."""
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
    """The OLAP schema in `url`, as the pipeline's migration creates it."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        upgrade(conn)
    engine.dispose()


def truncate_olap(db: OlapDatabase) -> None:
    """Every OLAP table emptied (the schema stays)."""
    with db.transaction() as conn:
        for rollup in REGISTRY:
            conn.execute(sa.delete(rollup.table))


class Databases:
    """Creates and drops databases on the test server (the session's `databases` fixture)."""

    def __init__(self) -> None:
        self.admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self, purpose: str) -> str:
        """An empty database of its own; its URL."""
        name = f"ap_test_{purpose}_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
        self.created.append(name)
        return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    def create_demo(self, purpose: str, *, olap: bool = True) -> str:
        """A database with the demo's OLTP rows (TEST_SIZE) and, unless `olap` is False, the
        OLAP schema: OLTP and OLAP in one database, as most tests run them."""
        url = self.create(purpose)
        make_oltp(url)
        if olap:
            make_olap(url)
        return url

    def create_for_dagster(self, purpose: str) -> str:
        """A database for a Dagster instance, as DAGSTER_PG_URL must name it (psycopg2)."""
        url = sa.make_url(self.create(purpose)).set(drivername="postgresql+psycopg2")
        return url.render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(sa.text('DROP DATABASE IF EXISTS "' + name + '" WITH (FORCE)'))
        self.admin.dispose()


def run_sql(url: str, statement: str, **params: Any) -> None:
    """One SQL statement with bound parameters, committed."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(statement), params)
    engine.dispose()


def olap_rows(url: str, table: str) -> int:
    """How many rows the OLAP table `analytics.<table>` holds in the database at `url`."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(sa.table(table, schema="analytics"))
            ).scalar_one()
    finally:
        engine.dispose()


def evaluate_sensor(
    sensor: Any, instance: dg.DagsterInstance, url: str, cursor: str | None = None
) -> dg.SensorResult:
    """One evaluation of `sensor` on `instance`, reading OLTP at `url`."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"oltp": OltpDatabase(url=url)}
    ) as ctx:
        return sensor(ctx)


# -- Processes -------------------------------------------------------------------------------------

CLI = [sys.executable, "-m", "analytics_pipeline.cli"]


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who set nothing (the embedded default in `home`), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "OLTP_DATABASE_URL",
            "OLAP_DATABASE_URL",
            "DAGSTER_PG_URL",
            "DAGSTER_HOME",
            # conftest pins it for in-process tests; commands find it from their data.
            "ANALYTICS_PARTITIONS_START",
        }
    }
    env["ANALYTICS_PIPELINE_HOME"] = str(home)
    env.update(extra)
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`analytics-pipeline ARGS` in the project root, to its end (bounded)."""
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def terminate(proc: subprocess.Popen[Any], timeout: float = 60) -> int:
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


def start_daemon(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`dagster-daemon run` on the project's workspace, in a session of its own (for
    terminate())."""
    daemon = str(Path(sys.executable).with_name("dagster-daemon"))
    return subprocess.Popen(
        [daemon, "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_until(predicate: Callable[[], T], timeout: float, what: str, poll: float = 1) -> T:
    """The first truthy value of `predicate`, polled until `timeout` (a generous bound: it ends
    as soon as the condition holds); fails naming `what` it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    """POST a query to a Dagster webserver's /graphql; the decoded answer (errors included)."""
    req = urllib.request.Request(
        f"{base_url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())
