"""The single wiring point: every asset, resource, job, schedule and sensor of the project."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from analytics_pipeline.assets.rollups import build_rollup_asset
from analytics_pipeline.assets.selection import ROLLUP_SELECTION
from analytics_pipeline.assets.sources import source_specs
from analytics_pipeline.automation.observations import source_observation_sensor
from analytics_pipeline.automation.schedules import daily_refresh, intraday_refresh
from analytics_pipeline.automation.sensors import (
    late_data_sensor,
    run_failure_sensor,
    tenant_sensor,
)
from analytics_pipeline.deployment.executor import resolve_executor
from analytics_pipeline.governance.retention import enforce_retention, retention_schedule
from analytics_pipeline.names import REFRESH_JOB
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.settings import OLAP_URL_ENV, OLTP_URL_ENV

GIT_URL_ENV = "ANALYTICS_GIT_URL"
GIT_BRANCH_ENV = "ANALYTICS_GIT_BRANCH"

rollup_assets = [build_rollup_asset(r) for r in REGISTRY]

refresh_analytics_job = dg.define_asset_job(
    name=REFRESH_JOB,
    selection=ROLLUP_SELECTION,
    description="Recompute every OLAP table for the run's (tenant, date) partitions.",
)


def _resources() -> dict[str, dg.ConfigurableResource]:
    # OLAP_DATABASE_URL defaults to the OLTP database (the contract); EnvVar keeps the URLs (and
    # their passwords) out of the code and out of the UI.
    olap_env = OLAP_URL_ENV if os.environ.get(OLAP_URL_ENV) else OLTP_URL_ENV
    return {
        "oltp": OltpDatabase(
            url=dg.EnvVar(OLTP_URL_ENV), application_name="analytics_pipeline:oltp"
        ),
        "olap": OlapDatabase(url=dg.EnvVar(olap_env), application_name="analytics_pipeline:olap"),
        # Settings (and the PostHog key) come from the environment: docs/EVENT_TRACKING.md.
        "tracking": EventTrackingResource(),
    }


def _with_code_links(assets: list) -> list:
    """With ANALYTICS_GIT_URL (e.g. https://github.com/org/repo), each asset's code reference
    links to its file in that repository (branch ANALYTICS_GIT_BRANCH, default main) instead of
    the local path."""
    git_url = os.environ.get(GIT_URL_ENV)
    if not git_url:
        return assets
    return dg.link_code_references_to_git(
        assets,
        git_url=git_url,
        git_branch=os.environ.get(GIT_BRANCH_ENV, "main"),
        file_path_mapping=dg.AnchorBasedFilePathMapping(
            local_file_anchor=Path(__file__).resolve().parents[1],
            file_anchor_path_in_repository="",
        ),
    )


defs = dg.Definitions(
    assets=_with_code_links([dg.AssetsDefinition(specs=source_specs), *rollup_assets]),
    jobs=[refresh_analytics_job, enforce_retention],
    schedules=[daily_refresh, intraday_refresh, retention_schedule],
    sensors=[tenant_sensor, late_data_sensor, run_failure_sensor, source_observation_sensor],
    resources=_resources(),
    # ANALYTICS_EXECUTOR: multiprocess (default) or celery (docs/DEPLOYMENT.md).
    executor=resolve_executor(),
)
