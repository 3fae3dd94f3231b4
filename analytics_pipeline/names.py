"""The names the pipeline's objects are known by outside the code that builds them.

Schedules, sensors, backfills, retention and the CLI refer to an OLAP table's asset and to the
refresh job by name; each name is spelled here once, so renaming one is one edit.
"""

from __future__ import annotations

import dagster as dg

# The first part of every OLAP table's asset key: `analytics/<table>` (the schema it lands in).
OLAP_PREFIX = "analytics"
# The job that refreshes the OLAP tables; schedules, sensors and backfills all launch it.
REFRESH_JOB = "refresh_analytics"


def table_key(table: str) -> dg.AssetKey:
    """The asset key of the OLAP table named `table`: `analytics/<table>`."""
    return dg.AssetKey([OLAP_PREFIX, table])
