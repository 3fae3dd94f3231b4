"""Which assets the refreshing schedules and sensors target: every registered OLAP table, and
the job that refreshes them."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from analytics_pipeline.names import REFRESH_JOB, table_key
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.rollups.tables import REGISTRY


def rollup_selection(rollups: Sequence[Rollup] = REGISTRY) -> dg.AssetSelection:
    """The assets of `rollups` (by default, every registered table)."""
    return dg.AssetSelection.assets(*(table_key(r.name) for r in rollups))


# The tables' names, in registry order, and the selection of their assets.
ALL_ROLLUPS = tuple(r.name for r in REGISTRY)
ROLLUP_SELECTION = rollup_selection()

refresh_analytics_job = dg.define_asset_job(
    name=REFRESH_JOB,
    selection=ROLLUP_SELECTION,
    description="Recompute every OLAP table for the run's (tenant, date) partitions.",
)
