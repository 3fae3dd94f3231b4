"""`analytics-pipeline dev` as the UI tests share it: the demo behind it, and the server.

The session's one server is conftest.py's `dev_server` fixture; test_ui_browser.py and
test_dev_command.py use it (and these names).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

from analytics_pipeline.embedded.server import DAGSTER_DATABASE, EmbeddedPostgres
from analytics_pipeline_tests.fake_posthog import free_port
from analytics_pipeline_tests.testbed import CLI, ROOT, cli_env, graphql, terminate

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
LATEST_MATERIALIZATION = """query($path: [String!]!) { assetOrError(assetKey: {path: $path}) {
  ... on Asset { assetMaterializations(limit: 1) { timestamp } } } }"""
# How old the freshness tests make an asset's latest materialization: twice its one-hour window.
LATE_BY = dt.timedelta(hours=2)
# The asset (and partition) the browser test sees fail its freshness policy. The `dev_server`
# fixture makes it late as soon as the server serves: the daemon's first freshness judgments come
# minutes after it starts, and so they overlap the tests before. Its tenant-001 partition on the
# first day: no test's run touches it.
LATE_ASSET = (["analytics", "warmup_analytics"], f"{DEV_DAYS[0].isoformat()}|tenant-001")


class DevServer:
    """`analytics-pipeline dev` (webserver and daemon) on the embedded PostgreSQL of `home`."""

    def __init__(self, home: Path) -> None:
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
            env=cli_env(home),
            # To a file, not a pipe: nobody reads a pipe while the server runs, and a full one
            # would block it.
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        return graphql(self.url, query, variables)

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

    def keep_late(self, key: list[str], partition: str, age: dt.timedelta = LATE_BY) -> None:
        """Make the latest materialization of `key` one `age` old, unless it already is one
        older than its one-hour freshness window.

        Call it on every poll while waiting for the daemon to judge the asset late: the dev
        server's schedules keep running (every half hour, on the hour), and a scheduled refresh
        in the meantime makes the asset fresh again, which is right, but not what the wait is
        for; recording the late materialization again makes it the latest once more.
        """
        latest = self.graphql(LATEST_MATERIALIZATION, {"path": key})["data"]["assetOrError"]
        stamps = [float(m["timestamp"]) / 1000 for m in latest["assetMaterializations"]]
        window_start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        if not stamps or dt.datetime.fromtimestamp(stamps[0], dt.UTC) > window_start:
            self.record_materialization(key, partition, dt.datetime.now(dt.UTC) - age)

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
