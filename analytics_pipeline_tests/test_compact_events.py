"""The event storage's compact layout (analytics_pipeline/instance/compact_events.py).

A range run's per-partition materializations are stored as one template per batch and each
partition's values; `event_logs` and `asset_event_tags` are views that read them back as the
rows Dagster would have stored (test_instance_storage.py compares those with stock storage's,
row for row). These tests check what the layout itself must do: that the events really are
stored compactly (the database-size point of the production-scale issue rests on it), that
deleting and rewriting them through the views leaves nothing behind, that processes starting
at once convert the database once, and that Dagster's tables still have the shape the views
copy (a Dagster upgrade that changes it fails here).
"""

from __future__ import annotations

import datetime as dt
import threading

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetEventTagsTable, SqlEventLogStorageTable
from dagster._serdes import deserialize_value
from dagster_postgres.event_log.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage

from analytics_pipeline.errors import SchemaError
from analytics_pipeline.instance import compact_events, dagster_schema
from analytics_pipeline.instance.event_rows import TENANT_PART
from analytics_pipeline.partitions import TenantDay, add_tenants, range_tags
from analytics_pipeline_tests.testbed import ROOT, TEST_SIZE, truncate_olap

FIRST = TenantDay("tenant-001", dt.date(2026, 3, 20))
LAST = TenantDay("tenant-003", dt.date(2026, 3, 26))
PARTITIONS = 3 * 7
ASSETS = [
    dg.AssetKey(["analytics", "campaign_analytics"]),
    dg.AssetKey(["analytics", "lead_analytics"]),
]


def _tenant(partition: str) -> str:
    return partition.split("|")[TENANT_PART - 1]


def _count(url: str, sql: str, **params: object) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql), params).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def ran(defs, olap, fresh_instance_home, monkeypatch):
    """A real range run over FIRST..LAST of two assets on the project's instance; yields the
    open instance, the database URL and the run id."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    truncate_olap(olap)
    url, home = fresh_instance_home((ROOT / "dagster.yaml").read_text(), "compact")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        add_tenants(instance, TEST_SIZE.tenant_ids())
        result = defs.resolve_job_def("refresh_analytics").execute_in_process(
            instance=instance, tags=range_tags(FIRST, LAST), asset_selection=ASSETS
        )
        assert result.success
        yield instance, url, result.run_id


def test_a_range_runs_materializations_are_stored_as_values_of_one_template(ran):
    """Each partition's materialization is a compact row (no row of its own, no tag rows), one
    template per asset's batch, and reads back through `event_logs` as that partition's event."""
    instance, url, run_id = ran
    assert _count(url, "SELECT count(*) FROM event_log_compact") == len(ASSETS) * PARTITIONS
    assert _count(url, "SELECT count(*) FROM event_log_templates WHERE run_id = :r", r=run_id) == 2
    assert (
        _count(
            url,
            "SELECT count(*) FROM event_log_rows WHERE dagster_event_type = "
            "'ASSET_MATERIALIZATION' AND partition IS NOT NULL",
        )
        == 0
    )
    assert _count(url, "SELECT count(*) FROM asset_event_tag_rows") == 0
    # Through the view, each is a materialization of its own partition with its own tags.
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT e.id, e.partition, e.event FROM event_logs e JOIN event_log_compact c "
                "ON c.id = e.id ORDER BY e.id"
            )
        ).all()
        tags = conn.execute(
            sa.text(
                "SELECT event_id, key, value FROM asset_event_tags "
                "WHERE key = 'dagster/partition/tenant'"
            )
        ).all()
    engine.dispose()
    assert len(rows) == len(ASSETS) * PARTITIONS
    for _id, partition, text in rows:
        entry = deserialize_value(text, EventLogEntry)
        materialization = entry.get_dagster_event().step_materialization_data.materialization
        assert materialization.partition == partition
        assert materialization.tags["dagster/partition/tenant"] == _tenant(partition)
    assert {(i, v) for i, _k, v in tags} == {(i, _tenant(p)) for i, p, _t in rows}
    # Dagster's own reads see them: every partition of the range is materialized.
    materialized = instance.get_materialized_partitions(ASSETS[0])
    assert len(materialized) == PARTITIONS


def test_deleting_a_run_deletes_its_compact_events_and_templates(ran):
    """`delete_run` (the erasure of a tenant's runs, pruning) removes the run's events through
    the view: no compact row and no template of it may stay behind."""
    instance, url, run_id = ran
    instance.delete_run(run_id)
    assert _count(url, "SELECT count(*) FROM event_logs WHERE run_id = :r", r=run_id) == 0
    assert _count(url, "SELECT count(*) FROM event_log_compact") == 0
    assert _count(url, "SELECT count(*) FROM event_log_templates") == 0
    assert instance.get_materialized_partitions(ASSETS[0]) == set()


def test_rewriting_a_compact_event_makes_it_a_row_with_its_tags(ran):
    """The erasure rewrites events that quote a tenant (`update_event_log_record`): a compact
    event so rewritten becomes a row of its own, reads back as written, and keeps its tags."""
    instance, url, _run_id = ran
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        event_id, text = conn.execute(
            sa.text(
                "SELECT id, event FROM event_logs "
                "WHERE id = (SELECT min(id) FROM event_log_compact)"
            )
        ).one()
        tags_before = conn.execute(
            sa.text("SELECT key, value FROM asset_event_tags WHERE event_id = :i ORDER BY key"),
            {"i": event_id},
        ).all()
    entry = deserialize_value(text, EventLogEntry)
    rewritten = entry._replace(user_message="rewritten")
    instance.event_log_storage.update_event_log_record(event_id, rewritten)  # type: ignore[attr-defined]
    with engine.connect() as conn:
        assert (
            conn.execute(
                sa.text("SELECT count(*) FROM event_log_compact WHERE id = :i"), {"i": event_id}
            ).scalar_one()
            == 0
        )
        stored = conn.execute(
            sa.text("SELECT event FROM event_log_rows WHERE id = :i"), {"i": event_id}
        ).scalar_one()
        tags_after = conn.execute(
            sa.text("SELECT key, value FROM asset_event_tag_rows WHERE event_id = :i ORDER BY key"),
            {"i": event_id},
        ).all()
    engine.dispose()
    assert deserialize_value(stored, EventLogEntry).user_message == "rewritten"
    assert tags_before and tags_after == tags_before
    assert len(instance.get_materialized_partitions(ASSETS[0])) == PARTITIONS


def test_the_latest_events_of_an_asset_read_in_two_steps_as_dagster_reads_them(ran):
    """The storage reads "the latest n events" as ids first, then their events (the view would
    fill in every matching compact event's JSON before sorting): the records must be those of
    Dagster's own one-query read, in its order, for every filter shape it is asked."""
    instance, _url, _run_id = ran
    storage = instance.event_log_storage
    stock = super(type(storage), storage)
    materialized = dg.DagsterEventType.ASSET_MATERIALIZATION
    partition = sorted(instance.get_materialized_partitions(ASSETS[0]))[3]
    filters = [
        dg.EventRecordsFilter(event_type=materialized, asset_key=ASSETS[0]),
        dg.EventRecordsFilter(
            event_type=materialized, asset_key=ASSETS[1], asset_partitions=[partition]
        ),
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED),
    ]
    for records_filter in filters:
        for ascending in (False, True):
            ours = storage._get_event_records(records_filter, limit=5, ascending=ascending)
            theirs = stock._get_event_records(records_filter, limit=5, ascending=ascending)
            assert ours == theirs and ours, (records_filter, ascending)
    assert (
        compact_events.stock_event_records_sha256() == compact_events.STOCK_EVENT_RECORDS_SHA256
    ), (
        "Dagster's SqlEventLogStorage._get_event_records changed: review compact_events.ids_query "
        "and records, then update STOCK_EVENT_RECORDS_SHA256"
    )


def test_the_latest_freshness_state_reads_in_two_steps_as_dagster_reads_it(ran):
    """The freshness daemon reads each asset's latest freshness state every tick; Dagster's
    query joins the view to the latest ids, which fills in every compact event (29 s at 2.5 M).
    The storage reads the ids first: the records must be exactly Dagster's."""
    instance, _url, _run_id = ran
    storage = instance.event_log_storage
    stock = super(type(storage), storage)
    states = [FreshnessState.PASS, FreshnessState.WARN, FreshnessState.FAIL]
    for key, (before, after) in zip(ASSETS, [states[:2], states[1:]], strict=True):
        for previous, new in [(FreshnessState.UNKNOWN, before), (before, after)]:
            instance._report_runless_asset_event(  # the freshness daemon's own call
                asset_event=FreshnessStateChange(
                    key=key, previous_state=previous, new_state=new, state_change_timestamp=1.0
                )
            )
    keys = [*ASSETS, dg.AssetKey(["analytics", "never_fresh"])]
    ours = storage.get_freshness_state_records(keys)
    assert ours == stock.get_freshness_state_records(keys)
    assert {k: r.freshness_state for k, r in ours.items()} == {
        ASSETS[0]: FreshnessState.WARN,
        ASSETS[1]: FreshnessState.FAIL,
    }
    assert compact_events.stock_freshness_sha256() == compact_events.STOCK_FRESHNESS_SHA256, (
        "Dagster's get_freshness_state_records changed: review "
        "compact_events.latest_events_by_asset, then update STOCK_FRESHNESS_SHA256"
    )


def test_the_views_copy_dagsters_columns():
    """The views must have exactly the columns of Dagster's tables, in order: a Dagster
    upgrade that adds, drops or reorders one fails here (then review compact_events.py)."""
    dagster = {
        compact_events.EVENTS_VIEW: tuple(SqlEventLogStorageTable.c.keys()),
        compact_events.TAGS_VIEW: tuple(AssetEventTagsTable.c.keys()),
    }
    assert dagster == dict(compact_events.DAGSTER_COLUMNS)


def test_processes_starting_at_once_convert_once_and_refuse_another_shape(databases):
    """Several processes (webserver, daemon, run workers) start on a new database at once: one
    converts it, the others find it converted. A table of another shape is refused by name."""
    url = databases.create("convert")
    pg_url = sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(False)
    PostgresEventLogStorage(pg_url).dispose()  # Dagster's own tables, as a stock instance has
    PostgresRunStorage(pg_url).dispose()
    PostgresScheduleStorage(pg_url).dispose()
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:  # the eraser's schema guard knows both layouts
        assert dagster_schema.verify_known_schema(conn) is dagster_schema.KNOWN_TEXT_COLUMNS
    results: list[bool] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def convert() -> None:
        start.wait()
        try:
            results.append(compact_events.install(engine))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False, False, False, True]
    with engine.connect() as conn:
        assert compact_events.is_installed(conn)
        assert dagster_schema.verify_known_schema(conn) is dagster_schema.COMPACT_TEXT_COLUMNS

    other = databases.create("other_shape")
    other_engine = sa.create_engine(other)
    with other_engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE event_logs (id bigserial PRIMARY KEY, body text)"))
        conn.execute(sa.text("CREATE TABLE asset_event_tags (id bigserial PRIMARY KEY)"))
    with pytest.raises(SchemaError, match=r"'event_logs' has the columns \['id', 'body'\]"):
        compact_events.install(other_engine)
    engine.dispose()
    other_engine.dispose()
