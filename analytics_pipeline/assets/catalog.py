"""What the UI's catalog shows about an asset besides its data: column lineage, code, freshness.

- Column lineage (`dagster/column_lineage`) is derived from each rollup's SELECT
  (analytics_pipeline/rollups/lineage.py). Dagster's open-source UI hides that entry (its column
  lineage view is a Dagster+ feature), so each column's description in `dagster/column_schema`
  also ends with the OLTP columns it is computed from: the asset page's column table shows them.
- Code references (`dagster/code_references`) point at the file and line that define the asset:
  the rollup's SELECT in rollups/tables/, the OLTP table in sources/tables.py. With
  ANALYTICS_GIT_URL set, definitions.py turns them into links to that repository.
- Freshness: what the schedules promise, as a Dagster freshness policy (FRESHNESS).
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path

import dagster as dg

from analytics_pipeline.assets.sources import code_references, column_schema, source_key
from analytics_pipeline.rollups.lineage import column_lineage
from analytics_pipeline.rollups.spec import Rollup
from analytics_pipeline.sources import tables as source_tables

# The intraday schedule refreshes today's partitions every 30 minutes (and the daily one
# yesterday's at 00:30 UTC, in the same kind of run): an asset not materialized for an hour has
# missed at least one refresh. Dagster 1.13's policies judge the asset's latest materialization,
# whatever its partition; the partitions tab shows which (tenant, date) is behind.
FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=1), warn_window=dt.timedelta(minutes=45)
)
FRESHNESS_PROMISE = (
    "Today's partitions at most an hour behind (refreshed every 30 minutes); yesterday's "
    "final from about 00:30 UTC (daily_refresh)."
)


def rollup_columns(rollup: Rollup) -> dict[str, dg.TableSchema | dg.TableColumnLineage]:
    """`dagster/column_schema` (lineage in each description) and `dagster/column_lineage`."""
    lineage = {name: sorted(refs) for name, refs in column_lineage(rollup).items() if refs}
    tables = source_tables.metadata.tables
    deps = {
        name: [dg.TableColumnDep(asset_key=source_key(tables[t]), column_name=c) for t, c in refs]
        for name, refs in lineage.items()
    }
    return {
        "dagster/column_schema": column_schema(
            rollup.table,
            suffixes={name: f"From OLTP: {_render(refs)}." for name, refs in lineage.items()},
        ),
        "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=deps),
    }


def _render(refs: list[tuple[str, str]]) -> str:
    """emails.status, emails.sent_at; mailboxes.daily_limit"""
    by_table: dict[str, list[str]] = {}
    for table, column in refs:
        by_table.setdefault(table, []).append(column)
    return "; ".join(f"{t}.{', '.join(cols)}" for t, cols in by_table.items())


def rollup_code(rollup: Rollup) -> dict[str, dg.CodeReferencesMetadataValue]:
    """The rollup's SELECT (its table module) and the factory that makes it an asset."""
    select_file = inspect.getsourcefile(rollup.select)
    if select_file is None:
        raise TypeError(f"rollup {rollup.name}: its SELECT has no source file to link to")
    _, select_line = inspect.getsourcelines(rollup.select)
    factory = Path(__file__).with_name("rollups.py")
    return code_references(
        (Path(select_file).resolve(), select_line, f"{rollup.name}: its SELECT"),
        (factory, None, "the asset factory"),
    )
