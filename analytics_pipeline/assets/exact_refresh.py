"""The exact-refresh job: recompute a given set of (tenant, date) partitions of some tables.

A Dagster run of the partitioned assets covers a rectangle (a range of tenants x a range of
days) and records a materialization for every partition in it. Late changes scattered through
the matrix (a few days here and there in every tenant) have no rectangle cover that is both small
and made of few runs: covering them with rectangles refreshes many times what changed. The
late-data sensor sends such changes here instead (automation/planning.py, `plan_refresh`).

The job has one op. Its config lists, per table and tenant, the days to refresh; the op refreshes
each table's partitions with the same engine, checks and telemetry as the assets (one
transaction per table), and records each refreshed partition as a materialization of the
table's asset, with that partition's own figures and its dimension tags, as the asset would,
stored in batches as an asset step's are (instance/batched_events.py).
The run summary and the checks' results are recorded once per table, as the asset does. Before
refreshing anything the op plans every listed partition (instance/planned_events.py), so the
partitions show "in progress" while it runs and "failed" if it fails before materializing them,
as an asset run's do. What is not there: they are not "in progress" while the run is still
queued (Dagster plans at run creation only for assets), and the materializations carry no data
version (Dagster computes one only for asset steps).
"""

import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from analytics_pipeline.assets.rollups import (
    OLTP_POOL,
    failed_check,
    partition_metadata,
    passed_checks,
    refresh_reported,
    rollup_key,
    run_summary,
)
from analytics_pipeline.errors import (
    ConfigurationError,
    DataQualityError,
    InvalidPartitionKeyError,
)
from analytics_pipeline.instance.batched_events import LoggedEvent, partition_materializations
from analytics_pipeline.instance.planned_events import plan_materializations
from analytics_pipeline.partitions import (
    TENANTS_PARTITIONS_NAME,
    TenantDay,
    consecutive_spans,
    tenant_daily_partitions,
    validate_tenant_id,
)
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.run_tags import EXACT_REFRESH_JOB, EXACT_REFRESH_OP

_SPAN = ".."

# table -> tenant -> its days, as inclusive spans: "2026-03-01..2026-03-03,2026-03-09".
PartitionsConfig = dict[str, dict[str, str]]


def encode(partitions: Mapping[str, Sequence[TenantDay]]) -> PartitionsConfig:
    """The op's `partitions` config for these partitions of each table (readable, compact)."""
    days: dict[str, dict[str, list[int]]] = {}
    for name, cells in partitions.items():
        by_tenant = days.setdefault(name, {})
        for cell in sorted(set(cells)):
            by_tenant.setdefault(cell.tenant_id, []).append(cell.day.toordinal())
    return encode_days(days)


def encode_days(days: Mapping[str, Mapping[str, Sequence[int]]]) -> PartitionsConfig:
    """`encode` for partitions given as table -> tenant -> sorted, distinct day ordinals (what
    the planner holds; no partition objects for a large burst)."""
    encoded: PartitionsConfig = {}
    for name, by_tenant in days.items():
        encoded[name] = {}
        for tenant, ordinals in by_tenant.items():
            encoded[name][tenant] = ",".join(
                dt.date.fromordinal(first).isoformat()
                + (_SPAN + dt.date.fromordinal(last).isoformat() if last > first else "")
                for first, last in consecutive_spans(ordinals)
            )
    return encoded


def _day(text: str, where: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigurationError(
            f"{where}: {text!r} is not a day (YYYY-MM-DD, or a span YYYY-MM-DD..YYYY-MM-DD)"
        ) from None


def decode(
    config: PartitionsConfig, *, registered: set[str], first_day: dt.date, last_day: dt.date
) -> dict[str, list[TenantDay]]:
    """The partitions `config` lists, per table, checked before anything is refreshed.

    Raises ConfigurationError naming the bad value: an unknown table, a tenant that is not a
    registered partition, a day that is not a date or outside [first_day, last_day], an empty
    list. Nothing is refreshed when any entry is bad.
    """
    known = {r.name for r in REGISTRY}
    decoded: dict[str, list[TenantDay]] = {}
    for name, tenants in config.items():
        if name not in known:
            raise ConfigurationError(
                f"partitions: unknown table {name!r}; the tables are {', '.join(sorted(known))}"
            )
        cells: set[TenantDay] = set()
        for tenant, spans in tenants.items():
            where = f"partitions.{name}.{tenant}"
            try:
                validate_tenant_id(tenant, fix=f"Correct {where} in the run config.")
            except InvalidPartitionKeyError as exc:
                raise ConfigurationError(str(exc)) from None
            if tenant not in registered:
                raise ConfigurationError(
                    f"{where}: tenant {tenant!r} is not a registered partition: register it "
                    "(the tenant sensor does) or leave it out"
                )
            for span in spans.split(","):
                first_text, _, last_text = span.strip().partition(_SPAN)
                first = _day(first_text, where)
                last = _day(last_text, where) if last_text else first
                if not first_day <= first <= last <= last_day:
                    raise ConfigurationError(
                        f"{where}: {span.strip()!r} is not a span of days within the date "
                        f"partitions {first_day}..{last_day} (first day first)"
                    )
                cells.update(
                    TenantDay(tenant, first + dt.timedelta(days=i))
                    for i in range((last - first).days + 1)
                )
        if not cells:
            raise ConfigurationError(f"partitions.{name}: no tenant listed; leave the table out")
        decoded[name] = sorted(cells)
    if not decoded:
        raise ConfigurationError("partitions: nothing to refresh; list at least one table")
    return decoded


class ExactRefreshConfig(dg.Config):
    """What one exact-refresh run recomputes."""

    partitions: PartitionsConfig = Field(
        description="Per table, per tenant, the days to refresh: a comma-separated list of "
        "days (YYYY-MM-DD) and inclusive spans (YYYY-MM-DD..YYYY-MM-DD). Tenants must be "
        "registered; days within the date partitions."
    )


def request(partitions: PartitionsConfig, tags: Mapping[str, str]) -> dg.RunRequest:
    """A run of the exact-refresh job over exactly `partitions` (as `encode` gives them)."""
    return dg.RunRequest(
        job_name=EXACT_REFRESH_JOB,
        run_config={"ops": {EXACT_REFRESH_OP: {"config": {"partitions": partitions}}}},
        tags=dict(tags),
    )


def build_exact_refresh_job(
    first_day: dt.date, resources: Mapping[str, dg.ConfigurableResource[Any]] | None = None
) -> dg.JobDefinition:
    """The exact-refresh job; `first_day` is the date dimension's start (as the assets').

    `resources`: the Definitions' own (oltp, olap, tracking), bound to the job here. A job that
    leaves them to the Definitions is rebuilt with them, and so is every sensor that targets it,
    which makes Dagster warn about a beta parameter of the sensor's it never set.
    """

    partitions_def = tenant_daily_partitions(first_day)

    @dg.op(
        name=EXACT_REFRESH_OP,
        pool=OLTP_POOL,
        out={},
        description="Refreshes exactly the listed (tenant, date) partitions of each listed "
        "table, as the table's asset would, and records each as a materialization of it.",
    )
    def refresh_partitions(
        context: dg.OpExecutionContext,
        config: ExactRefreshConfig,
        oltp: OltpDatabase,
        olap: OlapDatabase,
        tracking: EventTrackingResource,
    ) -> Iterator[LoggedEvent | dg.AssetObservation | dg.AssetCheckEvaluation]:
        wanted = decode(
            config.partitions,
            registered=set(context.instance.get_dynamic_partitions(TENANTS_PARTITIONS_NAME)),
            first_day=first_day,
            last_day=dt.datetime.now(dt.UTC).date(),
        )
        by_name = {r.name: r for r in REGISTRY}
        # Planned before any is refreshed, as for an asset run: every listed partition shows in
        # progress from here, and failed if the run stops before materializing it.
        for name, partitions in wanted.items():
            plan_materializations(
                context,
                rollup_key(by_name[name]),
                partitions_def,
                [str(p.partition_key()) for p in partitions],
            )
        for name, partitions in wanted.items():
            rollup = by_name[name]
            key = rollup_key(rollup)
            try:
                result = refresh_reported(context, rollup, partitions, oltp, olap, tracking)
            except DataQualityError as exc:
                yield dg.AssetCheckEvaluation(asset_key=key, **failed_check(exc, partitions))
                raise
            yield from partition_materializations(
                context,
                key,
                {p.partition_key(): partition_metadata(result.figures(p)) for p in partitions},
            )
            yield run_summary(rollup, result, partitions, olap)
            for passed in passed_checks(rollup, result):
                yield dg.AssetCheckEvaluation(asset_key=key, **passed)

    @dg.job(
        name=EXACT_REFRESH_JOB,
        resource_defs=dict(resources or {}),
        description="Recomputes exactly the (tenant, date) partitions its config lists, per "
        "table: the late-data sensor's runs for changes too scattered for a range run.",
    )
    def exact_refresh() -> None:
        refresh_partitions()

    return exact_refresh
