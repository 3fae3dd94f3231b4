"""One partitioned asset per rollup definition, built by a single factory."""

import warnings

import dagster as dg

from analytics_pipeline.assets.sources import column_schema, source_key
from analytics_pipeline.partitions import parse_partition_keys, tenant_daily_partitions
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import refresh
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.warehouse.metadata import SCHEMA

OLAP_PREFIX = "analytics"
# Caps how many steps read OLTP at once, across all runs (see dagster.yaml and docs/OPERATIONS.md).
OLTP_POOL = "oltp"


def rollup_key(rollup: Rollup) -> dg.AssetKey:
    return dg.AssetKey([OLAP_PREFIX, rollup.name])


def build_rollup_asset(rollup: Rollup) -> dg.AssetsDefinition:
    """The asset that keeps `analytics.<table>` equal to its SELECT over OLTP, per partition."""
    # BackfillPolicy is marked beta in Dagster 1.13 but is the documented way to make a backfill
    # one run; we pin Dagster, so the warning tells users nothing they can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter `backfill_policy`")
        return _build(rollup)


def _build(rollup: Rollup) -> dg.AssetsDefinition:
    @dg.asset(
        key=rollup_key(rollup),
        description=rollup.description,
        group_name=rollup.group,
        partitions_def=tenant_daily_partitions,
        # A backfill of many partitions becomes one run computing them all in one statement.
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[source_key(t) for t in rollup.sources],
        kinds={"postgres", "sql"},
        pool=OLTP_POOL,
        metadata={
            "dagster/table_name": f"olap.{SCHEMA}.{rollup.name}",
            "dagster/column_schema": column_schema(rollup.table),
        },
        tags={"layer": "olap"},
    )
    def _asset(
        context: dg.AssetExecutionContext, oltp: OltpDatabase, olap: OlapDatabase
    ) -> dg.MaterializeResult:
        partitions = parse_partition_keys(context.partition_keys)
        result = refresh(rollup, partitions, oltp=oltp, olap=olap, run_id=context.run.run_id)
        context.log.info(
            f"{rollup.name}: {result.partitions} partition(s) in {result.windows} window(s): "
            f"deleted {result.rows_deleted} row(s), wrote {result.rows_written} "
            f"({result.path}) in {result.seconds:.2f}s"
        )
        # Dagster copies a range run's metadata onto every partition it covers, so a row count
        # is only the partition's own when the run holds one partition.
        per_partition = (
            {"dagster/row_count": dg.MetadataValue.int(result.rows_written)}
            if result.partitions == 1
            else {}
        )
        return dg.MaterializeResult(
            metadata={
                **per_partition,
                "run_rows_written": dg.MetadataValue.int(result.rows_written),
                "run_rows_replaced": dg.MetadataValue.int(result.rows_deleted),
                "run_partitions": dg.MetadataValue.int(result.partitions),
                "windows": dg.MetadataValue.int(result.windows),
                "path": dg.MetadataValue.text(result.path),
                "seconds": dg.MetadataValue.float(round(result.seconds, 3)),
            }
        )

    return _asset
