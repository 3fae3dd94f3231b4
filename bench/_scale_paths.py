"""The five paths of bench/production_scale.py, each on a fresh Dagster database.

Import this only after ANALYTICS_PARTITIONS_START is set: analytics_pipeline.partitions reads it
at import time, and every project module below imports that one.

Each path builds its own Dagster instance (a fresh PostgreSQL database, the tenants registered
in order), measures the database before and after, and returns one `Measure`. Paths (1) and (3)
run `analytics-pipeline backfill` in this process (its `main`, as the shell would); (2) and (4)
go through a real `dagster-webserver` and `dagster-daemon run`; (5) evaluates the late-data
sensor in this process, as the daemon would on its tick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import dagster as dg
import sqlalchemy as sa
from _dagster_db import (
    Snapshot,
    drop_database,
    event_span,
    materialized_partitions,
    recorded_sql_seconds,
    run_statuses,
)
from _dagster_services import LOCATION, REPOSITORY, DagsterServices
from _databases import database

from analytics_pipeline import cli
from analytics_pipeline.assets.exact_refresh import decode
from analytics_pipeline.automation import changes, sensors
from analytics_pipeline.definitions import defs
from analytics_pipeline.partitions import (
    DATE_DIMENSION,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TENANT_DIMENSION,
    TenantDay,
    add_tenants,
    range_tags,
    tenant_daily_partitions,
)
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import refresh
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.run_tags import EXACT_REFRESH_JOB
from analytics_pipeline.settings import AutomationSettings

CAMPAIGN = "campaign_analytics"
ALL_TABLES = tuple(r.name for r in REGISTRY)
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
IN_FLIGHT = ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING"]
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
BACKFILL_TAG = "dagster/backfill"
# The burst of bench/automation_ticks.py (every 20th email, every 10th lead, across all tenants
# and days), but touching the rows without changing them: the trigger still moves updated_at,
# and the reused dataset stays as loaded.
BURST = (
    "UPDATE emails SET opened = opened WHERE id % 20 = 0",
    "UPDATE leads SET status = status WHERE id LIKE '%0'",
)

LAUNCH_RUN = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId } } ... on Error { message } } }"""
LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $p) { __typename
    ... on LaunchBackfillSuccess { backfillId } ... on Error { message } } }"""
BACKFILL_PROGRESS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status assetBackfillData { assetBackfillStatuses {
    ... on AssetPartitionsStatusCounts { numPartitionsMaterialized } } } } } }"""
CANCEL_BACKFILL = """mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) {
  __typename ... on Error { message } } }"""


@dataclass
class Measure:
    """What one path cost on one storage (a median, when the path was repeated)."""

    path: str
    storage: str
    partition_assets: int
    runs: int
    wall: float
    sql: float | None
    sql_source: str
    event_bytes: int
    db_growth: int
    materialized: int | None = None  # partition-assets with a materialization afterwards
    extra: dict[str, float | int | str] = field(default_factory=dict)

    @property
    def dagster_ms(self) -> float | None:
        if self.sql is None or not self.partition_assets:
            return None
        return (self.wall - self.sql) / self.partition_assets * 1000


@dataclass(frozen=True)
class Scale:
    """The data and the run shapes every path uses."""

    tenants: list[str]
    first_day: dt.date
    last_day: dt.date
    range_days: int
    oltp_url: str
    yaml_by_storage: dict[str, str]
    work: Path
    keep: bool
    ui_timeout: float
    run_timeout: float
    ui_partition_names: bool
    ui_tables: tuple[str, ...] = (CAMPAIGN,)

    @property
    def range_first(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.range_days - 1)

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1


@dataclass
class Fresh:
    """A fresh Dagster database and instance for one path on one storage."""

    name: str
    home: Path
    instance: dg.DagsterInstance
    engine: sa.Engine
    env: dict[str, str]

    def snapshot(self) -> Snapshot:
        return Snapshot.take(self.engine, self.name)


class Bench:
    def __init__(self, scale: Scale, echo: Callable[[str], None] = print) -> None:
        self.scale = scale
        self.echo = echo
        self.oltp = OltpDatabase(url=scale.oltp_url)
        self.olap = OlapDatabase(url=scale.oltp_url)
        self._homes = 0

    def close(self) -> None:
        self.oltp.dispose()
        self.olap.dispose()

    @contextlib.contextmanager
    def fresh(self, path: str, storage: str) -> Iterator[Fresh]:
        name = f"ap_bench_scale_{path}_{storage}"
        url = database(name, fresh=True)
        self._homes += 1
        home = self.scale.work / f"{self._homes:02d}-{path}-{storage}"
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(self.scale.yaml_by_storage[storage])
        os.environ["DAGSTER_PG_URL"] = (
            sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False)
        )
        os.environ["DAGSTER_HOME"] = str(home)
        engine = sa.create_engine(url)
        instance = dg.DagsterInstance.from_config(str(home))
        try:
            add_tenants(instance, self.scale.tenants)
            yield Fresh(name, home, instance, engine, dict(os.environ))
        finally:
            instance.dispose()
            engine.dispose()
            if not self.scale.keep:
                drop_database(name)

    # -- helpers ------------------------------------------------------------------------------

    def _sql(
        self, fresh: Fresh, run_ids: Sequence[str], tables: Sequence[str], first: dt.date
    ) -> tuple[float | None, str]:
        """The runs' recorded rollup seconds; else the same rollups timed here, outside Dagster."""
        recorded = recorded_sql_seconds(fresh.engine, run_ids)
        if recorded is not None:
            return recorded
        days = (self.scale.last_day - first).days + 1
        partitions = [
            TenantDay(t, first + dt.timedelta(days=i))
            for t in self.scale.tenants
            for i in range(days)
        ]
        by_name = {r.name: r for r in REGISTRY}
        started = time.perf_counter()
        try:
            for name in tables:
                refresh(by_name[name], partitions, oltp=self.oltp, olap=self.olap, run_id="bench")
        except Exception as exc:  # a changed refresh() must not lose the other figures
            self.echo(f"    could not time the rollups outside Dagster: {exc!r}")
            return None, "n/a"
        return time.perf_counter() - started, "timed separately"

    def _measure(
        self,
        fresh: Fresh,
        path: str,
        storage: str,
        before: Snapshot,
        wall: float,
        tables: Sequence[str],
        first: dt.date,
        partition_assets: int | None = None,
    ) -> Measure:
        after = fresh.snapshot()
        new_runs = sorted(after.run_ids - before.run_ids)
        statuses = run_statuses(fresh.engine, new_runs)
        succeeded = [r for r in new_runs if statuses.get(r) == "SUCCESS"]
        sql, source = self._sql(fresh, succeeded, tables, first)
        materialized = sum(materialized_partitions(fresh.engine).values())
        days = (self.scale.last_day - first).days + 1
        expected = len(self.scale.tenants) * days * len(tables)
        failed = len(new_runs) - len(succeeded)
        measure = Measure(
            path=path,
            storage=storage,
            partition_assets=partition_assets if partition_assets is not None else expected,
            runs=len(new_runs),
            wall=wall,
            sql=sql,
            sql_source=source,
            event_bytes=after.event_bytes - before.event_bytes,
            db_growth=after.size - before.size,
            materialized=materialized,
            extra={"events": after.events - before.events, "expected": expected},
        )
        span = event_span(fresh.engine, new_runs)
        if span is not None:
            measure.extra["event span s"] = round(span, 2)
            if sql is not None and measure.partition_assets:
                spent = (span - sql) / measure.partition_assets * 1000
                measure.extra["Dagster ms/pa in the event span"] = round(spent, 3)
        if failed:
            measure.extra["runs not succeeded"] = failed
        self.echo(
            f"    {path} on {storage}: {len(new_runs)} run(s) ({failed} not succeeded), "
            f"wall {wall:.2f}s, SQL {_fmt(sql)}s ({source}), "
            f"materialized {materialized:,} of {expected:,} partition-assets, "
            f"{measure.event_bytes:,} event bytes, database +{measure.db_growth / 1e6:.1f} MB"
        )
        return measure

    def _cli_backfill(self, args: list[str]) -> int:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli.main(["backfill", *args])
        for line in out.getvalue().splitlines():
            self.echo(f"    | {line}")
        return code

    def _services(self, fresh: Fresh) -> DagsterServices:
        services = DagsterServices(fresh.env, fresh.home)
        try:
            services.start_webserver()
            stopped = services.stop_automation()
            self.echo(f"    webserver up; stopped {', '.join(stopped) or 'nothing'}")
            services.start_daemon(fresh.instance)
            self.echo("    daemon up (run queue and backfill daemons beating)")
        except BaseException:
            services.stop()
            raise
        return services

    # -- the paths ----------------------------------------------------------------------------

    def range_in_process(self, storage: str) -> Measure:
        """(1) `analytics-pipeline backfill --table campaign_analytics` over the range."""
        return self._backfill("range", storage, self.scale.range_first, [CAMPAIGN])

    def full_rebuild(self, storage: str) -> Measure:
        """(3) `analytics-pipeline backfill` over every tenant and day, all seven tables."""
        return self._backfill("rebuild", storage, self.scale.first_day, ALL_TABLES)

    def _backfill(self, path: str, storage: str, first: dt.date, tables: Sequence[str]) -> Measure:
        """`analytics-pipeline backfill` from `first` to the last day (every table: no --table)."""
        chosen = [] if tables == ALL_TABLES else [a for t in tables for a in ("--table", t)]
        with self.fresh(path, storage) as fresh:
            before = fresh.snapshot()
            started = time.perf_counter()
            code = self._cli_backfill(
                ["--start", str(first), "--end", str(self.scale.last_day), *chosen]
            )
            wall = time.perf_counter() - started
            measure = self._measure(fresh, path, storage, before, wall, tables, first)
            measure.extra["exit code"] = code
            return measure

    def range_daemon(self, storage: str) -> Measure:
        """(2) The same range as a queued run: GraphQL launchRun, the daemon starts it."""
        s = self.scale
        with self.fresh("daemon", storage) as fresh, self._services(fresh) as services:
            tags = range_tags(
                TenantDay(s.tenants[0], s.range_first), TenantDay(s.tenants[-1], s.last_day)
            )
            params = {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "jobName": "refresh_analytics",
                    "assetSelection": [{"path": ["analytics", CAMPAIGN]}],
                },
                "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
            }
            before = fresh.snapshot()
            started_at = time.time()
            started = time.perf_counter()
            out, _ = services.graphql(LAUNCH_RUN, {"p": params}, timeout=s.run_timeout)
            launched = time.perf_counter() - started
            result = out["data"]["launchRun"]
            if result["__typename"] != "LaunchRunSuccess":
                raise RuntimeError(f"launchRun: {result}")
            run_id = result["run"]["runId"]
            deadline = time.monotonic() + s.run_timeout
            run = fresh.instance.get_run_by_id(run_id)
            while run.status not in DONE and time.monotonic() < deadline:
                time.sleep(0.5)
                run = fresh.instance.get_run_by_id(run_id)
            wall = time.perf_counter() - started
            if run.status not in DONE:
                self.echo(f"    run {run_id} still {run.status.value} after {s.run_timeout:.0f}s")
            record = fresh.instance.get_run_record_by_id(run_id)
            measure = self._measure(
                fresh, "daemon", storage, before, wall, [CAMPAIGN], s.range_first
            )
            measure.extra["launch s"] = round(launched, 2)
            if record.start_time and record.end_time:
                measure.extra["queued s"] = round(record.start_time - started_at, 2)
                measure.extra["run span s"] = round(record.end_time - record.start_time, 2)
            measure.extra["status"] = run.status.value
            return measure

    def ui_backfill(self, storage: str) -> Measure:
        """(4) launchPartitionBackfill of ALL partitions of --ui-tables, as from the UI."""
        s = self.scale
        with self.fresh("ui", storage) as fresh, self._services(fresh) as services:
            params: dict = {
                "assetSelection": [{"path": ["analytics", name]} for name in s.ui_tables]
            }
            if s.ui_partition_names:
                # What the launch dialog sends when All is picked in both boxes: every key.
                keys = tenant_daily_partitions().get_partition_keys(
                    dynamic_partitions_store=fresh.instance
                )
                params |= {"partitionNames": list(keys), "fromFailure": False}
            else:
                params["allPartitions"] = True
            before = fresh.snapshot()
            started_at = time.time()
            started = time.perf_counter()
            out, payload = services.graphql(LAUNCH_BACKFILL, {"p": params}, timeout=s.run_timeout)
            result = out["data"]["launchPartitionBackfill"]
            if result["__typename"] != "LaunchBackfillSuccess":
                raise RuntimeError(f"launchPartitionBackfill: {result}")
            backfill_id = result["backfillId"]
            extra: dict[str, float | int | str] = {
                "launch s": round(time.perf_counter() - started, 2),
                "payload bytes": payload,
            }
            progress = _BackfillWatch(fresh.instance, services, backfill_id, started_at)
            status = progress.wait(s.ui_timeout, self.echo)
            wall = time.perf_counter() - started
            if status not in BACKFILL_DONE:
                extra |= progress.cancel(self.echo)
                status = f"cancelled after {s.ui_timeout:.0f}s"
            materialized = sum(materialized_partitions(fresh.engine).values())
            measure = self._measure(
                fresh, "ui", storage, before, wall, list(s.ui_tables), s.first_day, materialized
            )
            with fresh.engine.connect() as conn:
                stored = conn.execute(
                    sa.text("SELECT octet_length(body) FROM bulk_actions WHERE key = :k"),
                    {"k": backfill_id},
                ).scalar()
            extra |= progress.figures()
            extra |= {
                "status": status,
                "stored backfill bytes": stored or 0,
                "daemon log bytes": services.log_bytes("daemon"),
            }
            measure.extra |= extra
            return measure

    def burst(self, storage: str) -> Measure:
        """(5) The late-data sensor's tick after a burst of changes across every tenant."""
        with self.fresh("burst", storage) as fresh:
            start = self._tick(fresh.instance, None)
            engine = sa.create_engine(self.scale.oltp_url)
            try:
                with engine.begin() as conn:
                    rows = sum(conn.execute(sa.text(sql)).rowcount for sql in BURST)
            finally:
                engine.dispose()
            # The changed partitions are what the sensor's own change detection returns.
            seen: list[dict] = []
            original = changes.affected_since

            def recording(*args, **kwargs):
                seen.append(original(*args, **kwargs))
                return seen[-1]

            before = fresh.snapshot()
            with contextlib.ExitStack() as stack:
                for module in (sensors, changes):
                    if hasattr(module, "affected_since"):
                        stack.enter_context(mock.patch.object(module, "affected_since", recording))
                started = time.perf_counter()
                result = self._tick(fresh.instance, start.cursor)
                tick = time.perf_counter() - started
            after = fresh.snapshot()
            requests = list(
                (result.run_requests or []) if isinstance(result, dg.SensorResult) else result
            )
            changed = sum(len(p) for p in seen[-1].values()) if seen else None
            requested = sum(self._requested(r) for r in requests)
            exact = next((r for r in requests if r.job_name == EXACT_REFRESH_JOB), None)
            exact_ms = self._execute_exact(fresh.instance, exact) if exact is not None else None
            self.echo(
                f"    burst on {storage}: {rows:,} rows touched, tick {tick:.2f}s, "
                f"{_fmt(changed, 0)} changed -> {len(requests)} run(s) over {requested:,} "
                "partition-assets"
            )
            return Measure(
                path="burst",
                storage=storage,
                partition_assets=changed or 0,
                runs=len(requests),
                wall=tick,
                sql=None,
                sql_source="-",
                event_bytes=after.event_bytes - before.event_bytes,
                db_growth=after.size - before.size,
                extra={
                    "rows touched": rows,
                    "changed": changed if changed is not None else "n/a",
                    "requested": requested,
                    "requested/changed": round(requested / changed, 2) if changed else "n/a",
                    "exact runs": sum(r.job_name == EXACT_REFRESH_JOB for r in requests),
                    "exact run ms/pa": _fmt(exact_ms, 2),
                },
            )

    def _execute_exact(self, instance: dg.DagsterInstance, request: dg.RunRequest) -> float:
        """Runs one exact-refresh request in process; its wall milliseconds per partition-asset
        (SQL included: what refreshing a scattered partition costs, all told)."""
        started = time.perf_counter()
        result = defs.resolve_job_def(EXACT_REFRESH_JOB).execute_in_process(
            run_config=request.run_config, instance=instance, tags=request.tags
        )
        wall = time.perf_counter() - started
        if not result.success:
            raise RuntimeError("the exact-refresh run failed: see its events above")
        size = self._requested(request)
        self.echo(f"    one exact run: {size:,} partition-assets in {wall:.1f}s")
        return 1000 * wall / size

    def _tick(self, instance: dg.DagsterInstance, cursor: str | None):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=dict(defs.resources)
        ) as ctx:
            return sensors.build_late_data_sensor(AutomationSettings(late_data_lag_seconds=0))(ctx)

    def _requested(self, request: dg.RunRequest) -> int:
        """Partition-assets a run request covers: its rectangle (tenants x days) x assets, or
        for an exact-refresh run the partitions its config lists."""
        if request.job_name == EXACT_REFRESH_JOB:
            listed = request.run_config["ops"]["refresh_partitions"]["config"]["partitions"]
            cells = decode(
                listed,
                registered=set(self.scale.tenants),
                first_day=dt.date.min,
                last_day=dt.date.max,
            )
            return sum(len(c) for c in cells.values())
        if request.asset_graph_subset is not None:
            return request.asset_graph_subset.num_partitions_and_non_partitioned_assets
        assets = len(request.asset_selection) if request.asset_selection else len(ALL_TABLES)
        tags = request.tags
        if request.partition_key or "dagster/partition" in tags:
            return assets
        position = {t: i for i, t in enumerate(self.scale.tenants)}
        first, last = (
            tenant_daily_partitions().get_partition_key_from_str(tags[k]).keys_by_dimension
            for k in (RANGE_START_TAG, RANGE_END_TAG)
        )
        tenants = position[last[TENANT_DIMENSION]] - position[first[TENANT_DIMENSION]] + 1
        days = (
            dt.date.fromisoformat(last[DATE_DIMENSION])
            - dt.date.fromisoformat(first[DATE_DIMENSION])
        ).days + 1
        return tenants * days * assets


class _BackfillWatch:
    """Follows one backfill: its runs (from the instance) and its progress as the UI shows it."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        services: DagsterServices,
        backfill_id: str,
        started_at: float,
    ) -> None:
        self.instance = instance
        self.services = services
        self.backfill_id = backfill_id
        self.started_at = started_at
        self.first_shown: float | None = None  # when the UI first showed a materialized one
        self.progress_errors = 0
        self.records: list = []

    def _records(self) -> list:
        self.records = list(
            self.instance.get_run_records(
                filters=dg.RunsFilter(tags={BACKFILL_TAG: self.backfill_id})
            )
        )
        return self.records

    def _shown(self) -> None:
        if self.first_shown is not None:
            return
        try:
            out, _ = self.services.graphql(BACKFILL_PROGRESS, {"id": self.backfill_id})
        except Exception:
            self.progress_errors += 1
            return
        data = out["data"]["partitionBackfillOrError"].get("assetBackfillData") or {}
        shown = sum(
            s.get("numPartitionsMaterialized", 0) for s in data.get("assetBackfillStatuses", [])
        )
        if shown:
            self.first_shown = time.time() - self.started_at

    def wait(self, timeout: float, echo: Callable[[str], None]) -> str:
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        polls = 0
        status = "REQUESTED"
        while time.monotonic() < deadline:
            status = self.instance.get_backfill(self.backfill_id).status.value
            records = self._records()
            if polls % 5 == 0:
                self._shown()
            polls += 1
            if status in BACKFILL_DONE:
                break
            if time.monotonic() - last_report > 60:
                last_report = time.monotonic()
                done = sum(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
                echo(f"    backfill {status}: {len(records)} run(s) launched, {done} succeeded")
            time.sleep(2)
        self._shown()
        return status

    def cancel(self, echo: Callable[[str], None]) -> dict[str, float | int | str]:
        """Cancel the backfill; count the runs that still started afterwards."""
        at_cancel = time.time()
        launched = len(self._records())
        self.services.graphql(CANCEL_BACKFILL, {"id": self.backfill_id})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            in_flight = self.instance.get_runs_count(
                filters=dg.RunsFilter(
                    tags={BACKFILL_TAG: self.backfill_id},
                    statuses=[dg.DagsterRunStatus(s) for s in IN_FLIGHT],
                )
            )
            status = self.instance.get_backfill(self.backfill_id).status.value
            if not in_flight and status in BACKFILL_DONE:
                break
            time.sleep(2)
        records = self._records()
        after = sum(r.create_timestamp.timestamp() > at_cancel for r in records)
        echo(f"    cancelled with {launched} run(s) launched; {after} more started after")
        return {"runs at cancel": launched, "runs started after cancel": after}

    def figures(self) -> dict[str, float | int | str]:
        ends = sorted(
            r.end_time
            for r in self.records
            if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS and r.end_time
        )
        out: dict[str, float | int | str] = {
            "runs succeeded": len(ends),
            "first success s": round(ends[0] - self.started_at, 1) if ends else "-",
            "last success s": round(ends[-1] - self.started_at, 1) if ends else "-",
            "first shown materialized s": (
                round(self.first_shown, 1) if self.first_shown is not None else "never"
            ),
        }
        if self.progress_errors:
            out["progress query errors"] = self.progress_errors
        return out


def _fmt(value: float | int | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
