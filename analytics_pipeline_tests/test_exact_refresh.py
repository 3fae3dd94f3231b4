"""The exact-refresh job's config: what a run refreshes is exactly what its config lists.

Why: the late-data sensor sends scattered changes to this job (test_automation.py runs one end
to end), and an operator may launch it from the launchpad with a hand-written config. A wrong
entry (a table, a tenant, a day) must be refused with the value and the fix before anything is
refreshed, so a run never writes part of what it was asked for; and a run over several tenants
must hold off the erasure of the tenants it lists while it is queued or running.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from analytics_pipeline.assets.exact_refresh import decode, encode
from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.instance.forget import active_runs_covering
from analytics_pipeline.partitions import TenantDay, add_tenants
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.run_tags import EXACT_REFRESH_JOB
from analytics_pipeline_tests.testbed import STOCK_DAGSTER_YAML, TEST_SIZE, olap_rows, truncate_olap

FIRST, LAST = dt.date(2026, 3, 12), dt.date(2026, 3, 31)
REGISTERED = {"tenant-001", "tenant-002"}


def _decode(config: dict[str, dict[str, str]]) -> dict[str, list[TenantDay]]:
    return decode(config, registered=REGISTERED, first_day=FIRST, last_day=LAST)


def test_days_and_spans_round_trip():
    cells = {
        "campaign_analytics": [
            TenantDay("tenant-001", dt.date(2026, 3, d)) for d in (12, 13, 14, 20)
        ]
        + [TenantDay("tenant-002", dt.date(2026, 3, 31))],
    }
    config = encode(cells)
    assert config == {
        "campaign_analytics": {
            "tenant-001": "2026-03-12..2026-03-14,2026-03-20",
            "tenant-002": "2026-03-31",
        }
    }
    assert _decode(config) == cells


@pytest.mark.parametrize(
    ("config", "named", "fix"),
    [
        (
            {"campaign_analytic": {"tenant-001": "2026-03-20"}},
            "'campaign_analytic'",
            "the tables are",
        ),
        ({"campaign_analytics": {"tenant-009": "2026-03-20"}}, "'tenant-009'", "register it"),
        ({"campaign_analytics": {"bad|id": "2026-03-20"}}, "'bad|id'", "Correct partitions."),
        ({"campaign_analytics": {"tenant-001": "2026-3-20x"}}, "'2026-3-20x'", "YYYY-MM-DD"),
        (
            {"campaign_analytics": {"tenant-001": "2026-03-11"}},
            "'2026-03-11'",
            "2026-03-12..2026-03-31",
        ),
        (
            {"campaign_analytics": {"tenant-001": "2026-03-20..2026-03-18"}},
            "'2026-03-20..2026-03-18'",
            "first day first",
        ),
        ({"campaign_analytics": {}}, "partitions.campaign_analytics", "leave the table out"),
        ({}, "nothing to refresh", "at least one table"),
    ],
)
def test_a_bad_entry_is_refused_naming_it_and_the_fix(config, named, fix):
    with pytest.raises(ConfigurationError) as info:
        _decode(config)
    assert named in str(info.value) and fix in str(info.value)


def _run_exact(
    instance: dg.DagsterInstance, oltp_url: str, config: dict[str, dict[str, str]]
) -> dg.ExecuteInProcessResult:
    """An exact-refresh run of `config` on empty OLAP tables, the test tenants registered."""
    from analytics_pipeline.definitions import defs

    add_tenants(instance, TEST_SIZE.tenant_ids())
    truncate_olap(OlapDatabase(url=oltp_url))
    return defs.resolve_job_def(EXACT_REFRESH_JOB).execute_in_process(
        run_config={"ops": {"refresh_partitions": {"config": {"partitions": config}}}},
        instance=instance,
        raise_on_error=False,
    )


def test_a_run_with_one_bad_entry_refreshes_nothing(clean_instance, oltp_url, monkeypatch):
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    config = {
        "campaign_analytics": {"tenant-001": "2026-03-20"},
        "lead_analytics": {"tenant-001": "2026-03-20", "tenant-404": "2026-03-20"},
    }
    result = _run_exact(clean_instance, oltp_url, config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    assert (
        "'tenant-404' is not a registered partition"
        in failure.step_failure_data.error.cause.message
    )
    assert olap_rows(oltp_url, "campaign_analytics") == 0
    assert not [
        e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    ]


@pytest.mark.parametrize("storage", ["project", "stock"])
def test_an_exact_runs_partitions_show_materialized_or_failed_as_an_asset_runs_do(
    clean_instance, oltp_url, monkeypatch, fresh_instance_home, storage
):
    """Dagster plans materializations only for the assets a run selects, so without its own
    planned events an exact run that failed left no trace in the partitions matrix: a table it
    never got to looked as it did before. The run plans every listed partition before it
    refreshes any; when the second table's refresh fails (injected: a real fault mid-run is not
    reproducible), its partitions show failed, the first table's materialized, the rest as they
    were. On the project's storage (one planned event per table, its partitions as a subset) as
    on stock dagster-postgres (one per partition)."""
    if storage == "stock":
        _, home = fresh_instance_home(STOCK_DAGSTER_YAML, "exact_refresh_stock")
        instance = dg.DagsterInstance.from_config(str(home))
    else:
        instance = clean_instance
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)
    from analytics_pipeline.assets import exact_refresh
    from analytics_pipeline.definitions import defs

    real = exact_refresh.refresh_reported

    def failing_for_leads(context, rollup, partitions, *args):
        if rollup.name == "lead_analytics":
            raise RuntimeError("injected: OLAP went away during lead_analytics")
        return real(context, rollup, partitions, *args)

    monkeypatch.setattr(exact_refresh, "refresh_reported", failing_for_leads)
    config = {
        "campaign_analytics": {"tenant-001": "2026-03-20..2026-03-21"},
        "lead_analytics": {"tenant-002": "2026-03-20", "tenant-001": "2026-03-22"},
    }
    result = _run_exact(instance, oltp_url, config)
    assert not result.success

    def statuses(asset: str, keys: list[str]) -> dict[str, str]:
        asset_def = defs.resolve_assets_def(dg.AssetKey(["analytics", asset]))
        partitions_def = asset_def.partitions_def
        assert partitions_def is not None
        found = instance.get_status_by_partition(asset_def.key, keys, partitions_def)
        if found is None:  # Dagster has no status for an asset with no events at all
            return dict.fromkeys(keys, "MISSING")
        return {key: status.value if status else "MISSING" for key, status in found.items()}

    def key(day: str, tenant: str) -> str:
        return f"{day}|{tenant}"

    campaign = [key("2026-03-20", "tenant-001"), key("2026-03-21", "tenant-001")]
    leads = [key("2026-03-20", "tenant-002"), key("2026-03-22", "tenant-001")]
    untouched = [key("2026-03-22", "tenant-002")]
    assert statuses("campaign_analytics", campaign + untouched) == {
        campaign[0]: "MATERIALIZED",
        campaign[1]: "MATERIALIZED",
        untouched[0]: "MISSING",
    }
    assert statuses("lead_analytics", leads + untouched) == {
        leads[0]: "FAILED",
        leads[1]: "FAILED",
        untouched[0]: "MISSING",
    }


@pytest.mark.parametrize(
    "tags",
    [
        pytest.param({"analytics/tenants_first": "b", "analytics/tenants_last": "d"}, id="planned"),
        pytest.param({}, id="launched-by-hand"),
    ],
)
def test_a_running_exact_run_holds_off_the_erasure_of_exactly_the_tenants_it_lists(
    clean_instance, oltp_url, monkeypatch, tags
):
    """The erasure refuses while a run that can write the tenant's rows is queued or running. An
    exact run has no partition range: it covers the tenants its config lists. Not those its
    tenant-span tags merely pass over (c, which could be offboarded and waiting for erasure), and
    also when a person launched it from the launchpad with no tags at all."""
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    from analytics_pipeline.definitions import defs

    order = ["a", "b", "c", "d", "e"]
    add_tenants(clean_instance, order)
    config = {
        "campaign_analytics": {"b": "2026-03-20"},
        "lead_analytics": {"b": "2026-03-21", "d": "2026-03-20..2026-03-22"},
    }
    run = clean_instance.create_run_for_job(
        defs.resolve_job_def(EXACT_REFRESH_JOB),
        run_config={"ops": {"refresh_partitions": {"config": {"partitions": config}}}},
        tags=tags,
        status=dg.DagsterRunStatus.STARTED,
    )
    try:
        held = [t for t in order if run.run_id in active_runs_covering(clean_instance, t, order)]
        assert held == ["b", "d"]
    finally:
        clean_instance.delete_run(run.run_id)


def test_an_exact_runs_materializations_reach_the_storage_in_batches(
    clean_instance, oltp_url, monkeypatch
):
    """Guards instance/batched_events.py: one at a time, an op's materializations cost ~20 ms
    each (13,187 took 5 minutes at production scale). They must reach the storage as batches,
    and be stored exactly as Dagster stores the same materializations yielded by an op."""
    monkeypatch.setenv("OLTP_DATABASE_URL", oltp_url)
    monkeypatch.delenv("OLAP_DATABASE_URL", raising=False)

    add_tenants(clean_instance, TEST_SIZE.tenant_ids())
    storage = clean_instance.event_log_storage
    batches: list[list[dg.DagsterEventType | None]] = []
    alone: list[dg.DagsterEventType | None] = []
    store_batch, store_one = storage.store_event_batch, storage.store_event
    monkeypatch.setattr(
        storage,
        "store_event_batch",
        lambda events: (
            batches.append([e.dagster_event_type for e in events]),
            store_batch(events),
        )[1],
    )
    monkeypatch.setattr(
        storage,
        "store_event",
        lambda event: (alone.append(event.dagster_event_type), store_one(event))[1],
    )
    config = {
        "campaign_analytics": {"tenant-001": "2026-03-20..2026-03-22"},
        "lead_analytics": {"tenant-002": "2026-03-25,2026-03-27"},
    }
    result = _run_exact(clean_instance, oltp_url, config)
    assert result.success
    mat = dg.DagsterEventType.ASSET_MATERIALIZATION
    assert mat not in alone
    assert sorted(b.count(mat) for b in batches if mat in b) == [2, 3]
    ours = _stored_materializations(clean_instance, result.run_id)
    assert len(ours) == 5

    @dg.op(out={})
    def plain():
        yield from ours.values()

    reference = (
        dg.GraphDefinition(name="plain", node_defs=[plain])
        .to_job()
        .execute_in_process(instance=clean_instance)
    )
    assert _stored_materializations(clean_instance, reference.run_id) == ours


def _stored_materializations(
    instance: dg.DagsterInstance, run_id: str
) -> dict[tuple[str, str | None], dg.AssetMaterialization]:
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100
    ).records
    found = {}
    for record in records:
        m = record.event_log_entry.get_dagster_event().step_materialization_data.materialization
        found[(m.asset_key.to_user_string(), m.partition)] = m
    return found
