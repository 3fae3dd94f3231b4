"""Creating the OLTP schema from the contract file: for tests and the demo only.

In production the product owns this schema; the pipeline never runs DDL against it.
"""

from __future__ import annotations

from importlib import resources

import sqlalchemy as sa

CONTRACT_FILE = "oltp_schema.sql"


def contract_sql() -> str:
    """The product's OLTP DDL, as shipped with the package (a copy of shared/contract)."""
    return resources.files("analytics_pipeline.contract").joinpath(CONTRACT_FILE).read_text()


# What to tell someone whose OLTP database is empty (a fresh clone's embedded server).
NO_TABLES_YET = (
    "the OLTP database has no tables yet: run `analytics-pipeline demo` to load demo data"
)


def oltp_schema_exists(conn: sa.Connection) -> bool:
    return sa.inspect(conn).has_table("emails")


def create_oltp_schema(conn: sa.Connection) -> None:
    """Run the contract DDL on `conn` (one transaction: all of it or none)."""
    # The file holds plpgsql bodies with semicolons: run it as one simple-query batch.
    conn.exec_driver_sql(contract_sql())
