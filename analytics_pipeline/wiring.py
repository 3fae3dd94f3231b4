"""The single wiring point: every asset, resource, job, schedule and sensor of the project.

`build_definitions(settings)` reads nothing itself: what varies by deployment comes in the
`Settings` object (analytics_pipeline.settings), resolved by whoever builds the Definitions
(`analytics_pipeline.definitions` for Dagster's commands, `demo` once the environment is set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import dagster as dg

from analytics_pipeline.assets.exact_refresh import build_exact_refresh_job
from analytics_pipeline.assets.rollups import build_rollup_asset
from analytics_pipeline.assets.selection import refresh_analytics_job
from analytics_pipeline.assets.sources import source_specs
from analytics_pipeline.automation.observations import build_source_observation_sensor
from analytics_pipeline.automation.schedules import build_refresh_schedules
from analytics_pipeline.automation.sensors import (
    build_late_data_sensor,
    build_tenant_sensor,
    run_failure_sensor,
)
from analytics_pipeline.deployment.executor import resolve_executor
from analytics_pipeline.governance.retention import enforce_retention, retention_schedule
from analytics_pipeline.history import partitions_start
from analytics_pipeline.partitions import tenant_daily_partitions
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.resources.tracking import EventTrackingResource
from analytics_pipeline.rollups.tables import REGISTRY
from analytics_pipeline.settings import OLTP_URL_ENV, Settings


def _resources(settings: Settings) -> dict[str, dg.ConfigurableResource[Any]]:
    # OLAP_DATABASE_URL defaults to the OLTP database (the contract); EnvVar keeps the URLs (and
    # their passwords) out of the code and out of the UI.
    olap_env = settings.olap_url_variable
    return {
        "oltp": OltpDatabase(
            url=dg.EnvVar(OLTP_URL_ENV), application_name="analytics_pipeline:oltp"
        ),
        "olap": OlapDatabase(url=dg.EnvVar(olap_env), application_name="analytics_pipeline:olap"),
        # Settings (and the PostHog key) come from the environment: docs/EVENT_TRACKING.md.
        "tracking": EventTrackingResource(),
    }


def _with_code_links(
    assets: list[dg.AssetsDefinition], settings: Settings
) -> list[dg.AssetsDefinition]:
    """With ANALYTICS_GIT_URL (e.g. https://github.com/org/repo), each asset's code reference
    links to its file in that repository (branch ANALYTICS_GIT_BRANCH, default main) instead of
    the local path."""
    if not settings.git_url:
        return assets
    linked = dg.link_code_references_to_git(
        assets,
        git_url=settings.git_url,
        git_branch=settings.git_branch,
        file_path_mapping=dg.AnchorBasedFilePathMapping(
            local_file_anchor=Path(__file__).resolve().parents[1],
            file_anchor_path_in_repository="",
        ),
    )
    # It maps each definition to one of the same kind: AssetsDefinitions in, AssetsDefinitions out.
    return cast(list[dg.AssetsDefinition], list(linked))


def build_definitions(settings: Settings) -> dg.Definitions:
    """The project's Definitions for `settings` (sensor and schedule tuning, executor, code
    links, which variable holds the OLAP URL)."""
    automation = settings.automation
    # Resolved here, once: every asset and sensor shares one date dimension.
    first_day = partitions_start(settings.partitions_start)
    partitions = tenant_daily_partitions(first_day)
    rollup_assets = [build_rollup_asset(r, partitions) for r in REGISTRY]
    resources = _resources(settings)
    exact_refresh_job = build_exact_refresh_job(first_day, resources)
    return dg.Definitions(
        assets=_with_code_links(
            [dg.AssetsDefinition(specs=source_specs), *rollup_assets], settings
        ),
        jobs=[refresh_analytics_job, exact_refresh_job, enforce_retention],
        schedules=[*build_refresh_schedules(automation), retention_schedule],
        sensors=[
            build_tenant_sensor(automation, first_day),
            build_late_data_sensor(automation, first_day, exact_refresh_job),
            run_failure_sensor,
            build_source_observation_sensor(automation),
        ],
        resources=resources,
        # ANALYTICS_EXECUTOR: multiprocess (default) or celery (docs/DEPLOYMENT.md).
        executor=resolve_executor(settings.executor),
    )
