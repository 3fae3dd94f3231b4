"""Observing the OLTP sources: row counts and the latest change of each, shown in the UI.

The OLTP tables are external assets: the product writes them, the pipeline only reads. Every
ANALYTICS_SOURCE_OBSERVE_SECONDS (`AutomationSettings.source_observe_seconds`) this sensor records
an AssetObservation on each source whose figures moved, so its asset page shows how many rows it
holds and when it last changed. The cost does not grow with the number of tenants:

- row counts come from PostgreSQL's statistics (`pg_stat_user_tables.n_live_tup`, kept up to date
  by every insert and delete): one catalog query for all tables, never a count(*) scan;
- the latest change is max(change column) over the rows changed after the last one seen (the
  cursor), on the same change columns and the same predicate (`changed_at > watermark`) the
  late-data sensor watches (automation/changes.py): a handful of rows per tick.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import dagster as dg
import sqlalchemy as sa

from analytics_pipeline.assets.sources import source_key
from analytics_pipeline.automation.changes import feeds
from analytics_pipeline.resources.database import OltpDatabase
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline.sources.schema import NO_TABLES_YET, oltp_schema_exists
from analytics_pipeline.sources.tables import metadata as oltp_metadata

# The change column of each source, as the late-data sensor watches it.
CHANGE_COLUMNS: dict[str, str] = {source: column for source, column in feeds(REGISTRY)}

_STATS = sa.text(
    "SELECT relname, n_live_tup FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname = ANY(:names)"
)


# A source's figures as the cursor keeps them: {"rows": int, "latest_change": iso str | None}.
SourceState = dict[str, Any]


def observe_sources(
    conn: sa.Connection, previous: dict[str, SourceState]
) -> tuple[list[dg.AssetObservation], dict[str, SourceState]]:
    """Observations of the sources whose row count or latest change moved since `previous`
    (source -> {"rows", "latest_change"}), and the new state."""
    names = [t.name for t in oltp_metadata.sorted_tables]
    rows = {name: n for name, n in conn.execute(_STATS, {"names": names})}
    state: dict[str, SourceState] = {}
    events = []
    for table in oltp_metadata.sorted_tables:
        before = previous.get(table.name, {})
        latest = before.get("latest_change")
        column = CHANGE_COLUMNS.get(table.name)
        if column is not None:
            changed = table.c[column]
            query = sa.select(sa.func.max(changed))
            if latest is not None:
                query = query.where(changed > dt.datetime.fromisoformat(latest))
            newer = conn.execute(query).scalar()
            if newer is not None:
                latest = newer.isoformat()
        count = int(rows.get(table.name) or 0)
        now: SourceState = {"rows": count, "latest_change": latest}
        state[table.name] = now
        if now == before:
            continue
        metadata: dict[str, dg.RawMetadataValue] = {
            "dagster/row_count": dg.MetadataValue.int(count),
            "row_count_from": dg.MetadataValue.text(
                "PostgreSQL statistics (pg_stat_user_tables.n_live_tup)"
            ),
        }
        if column is not None:
            metadata["change_column"] = dg.MetadataValue.text(column)
            if latest is not None:
                metadata["latest_change"] = dg.MetadataValue.timestamp(
                    dt.datetime.fromisoformat(latest)
                )
        events.append(dg.AssetObservation(asset_key=source_key(table), metadata=metadata))
    return events, state


def build_source_observation_sensor(automation: AutomationSettings) -> dg.SensorDefinition:
    """The sensor observing the sources every `automation.source_observe_seconds`."""

    @dg.sensor(
        name="source_observation_sensor",
        minimum_interval_seconds=automation.source_observe_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Observes the OLTP source tables: each one's row count (PostgreSQL statistics, no "
            "scan) and latest change (its late-data change column, read incrementally), recorded "
            "on the source asset when either moved. Costs the same for 5 tenants or 500."
        ),
    )
    def source_observation_sensor(
        context: dg.SensorEvaluationContext, oltp: OltpDatabase
    ) -> dg.SensorResult | dg.SkipReason:
        previous = json.loads(context.cursor or "{}")
        with oltp.read_snapshot() as conn:
            if not oltp_schema_exists(conn):
                return dg.SkipReason(NO_TABLES_YET)
            events, state = observe_sources(conn, previous)
        return dg.SensorResult(
            asset_events=events,
            cursor=json.dumps(state),
            skip_reason=None if events else "no source changed",
        )

    return source_observation_sensor
