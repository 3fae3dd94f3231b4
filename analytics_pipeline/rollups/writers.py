"""Writing a refresh's fresh rows into its OLAP table, inside the refresh's transaction.

Replace mode deletes the run's partitions first; append-only mode keeps every row already there
and inserts only rows whose grain is new. The rows arrive one of two ways (see engine.py):
`land_in_database` when OLTP is the same database, `copy_across` when it is another one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from analytics_pipeline.rollups.spec import Rollup, WriteMode
from analytics_pipeline.rollups.sql import Windows

# Scratch table for a refresh's fresh rows, dropped at commit (one refresh per transaction).
_LANDING = "rollup_incoming"

# Rows per (tenant_id, date) key, as counted by the database.
Counts = dict[tuple[str, dt.date], int]


def counted(conn: sa.Connection, rows: sa.CTE, params: Mapping[str, Any]) -> Counts:
    """Per (tenant, date), how many rows a data-modifying CTE returned (counted in PostgreSQL)."""
    query = sa.select(rows.c.tenant_id, rows.c.date, sa.func.count()).group_by(
        rows.c.tenant_id, rows.c.date
    )
    return {(tenant, day): n for tenant, day, n in conn.execute(query, params).all()}


def delete_partitions(rollup: Rollup, params: Mapping[str, Any], conn: sa.Connection) -> Counts:
    """DELETE exactly the run's partitions (replace mode); rows deleted per partition."""
    if rollup.write_mode != WriteMode.REPLACE:
        return {}
    t = rollup.table
    w = Windows()
    deleted = (
        sa.delete(t)
        .where(w.contains_day(t.c.tenant_id, t.c.date))
        .returning(t.c.tenant_id, t.c.date)
        .cte("deleted")
    )
    return counted(conn, deleted, params)


def prefer_hash_aggregation(conn: sa.Connection) -> None:
    """Make sorts a last resort for this transaction (see the comment for why)."""
    # PostgreSQL cannot estimate how many (tenant, UTC day, key) groups a timestamp expression
    # yields; after ANALYZE it guesses ~100x too many and plans a parallel sort that spills to
    # disk (measured: 13 s instead of 3 s on 5M emails). A rollup has few groups per row, so
    # hash aggregation (which itself spills if it must) is the right plan: make sorts a last
    # resort for this transaction only.
    conn.execute(sa.select(sa.func.set_config("enable_sort", "off", True)))


def grain(rollup: Rollup) -> list[str]:
    """The columns of the table's unique grain index, in index order."""
    index = next(i for i in rollup.table.indexes if i.name == f"{rollup.name}_grain")
    return [c.name for c in index.columns]


def _insert(rollup: Rollup, rows: sa.Select[Any]) -> sa.Insert:
    columns = [c.name for c in rollup.output_columns]
    stmt = pg_insert(rollup.table).from_select(columns, rows)
    if rollup.write_mode == WriteMode.APPEND_ONLY:
        # Rows already copied stay exactly as they are: never updated, never duplicated.
        stmt = stmt.on_conflict_do_nothing(index_elements=grain(rollup))
    return stmt


def land_in_database(
    rollup: Rollup, params: Mapping[str, Any], conn: sa.Connection
) -> Counts | None:
    """Compute the rows inside PostgreSQL and insert them (OLTP and OLAP in one database)."""
    # CREATE TABLE AS may run its SELECT in parallel where INSERT ... SELECT may not (measured:
    # 2.9 s against 7.6 s on 5M emails): aggregate into a scratch table, then insert its (few)
    # rows into the target.
    compiled = rollup.select(Windows()).compile(dialect=conn.dialect)
    conn.exec_driver_sql(
        "CREATE TEMPORARY TABLE " + _LANDING + " ON COMMIT DROP AS " + compiled.string,
        compiled.construct_params(params),
    )
    return _insert_landed(rollup, conn)


def _insert_landed(rollup: Rollup, conn: sa.Connection) -> Counts | None:
    """Insert the landed rows; for append-only tables, the rows new per partition (else None:
    in replace mode every row of a partition is new)."""
    landing = sa.Table(_LANDING, sa.MetaData(), *(sa.Column(c.name) for c in rollup.output_columns))
    insert = _insert(rollup, sa.select(*landing.c))
    if rollup.write_mode != WriteMode.APPEND_ONLY:
        conn.execute(insert)
        return None
    t = rollup.table
    return counted(conn, insert.returning(t.c.tenant_id, t.c.date).cte("appended"), {})


def copy_across(
    rollup: Rollup,
    params: Mapping[str, Any],
    *,
    src_conn: sa.Connection,
    olap_conn: sa.Connection,
) -> Counts | None:
    """Stream the rows from OLTP (another database) into OLAP with COPY, block by block."""
    columns = [c.name for c in rollup.output_columns]
    quote = olap_conn.dialect.identifier_preparer.quote
    compiled = rollup.select(Windows()).compile(dialect=src_conn.dialect)
    # psycopg binds COPY's parameters on the client (PostgreSQL takes none in COPY); they are
    # still passed as parameters and escaped by the driver, never formatted in by us.
    copy_out = "COPY (" + compiled.string + ") TO STDOUT"
    if rollup.write_mode == WriteMode.APPEND_ONLY:
        # COPY cannot skip conflicting rows: land them in a scratch table, then insert the new.
        olap_conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE "
            + _LANDING
            + " (LIKE "
            + _qualified(olap_conn, rollup.table)
            + " INCLUDING DEFAULTS) ON COMMIT DROP"
        )
        landing_sql = _LANDING
    else:
        landing_sql = _qualified(olap_conn, rollup.table)
    copy_in = "COPY " + landing_sql + " (" + ", ".join(quote(c) for c in columns) + ") FROM STDIN"
    # psycopg's own cursors: COPY has no SQLAlchemy API (the driver connection is untyped).
    src_cur = src_conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    dst_cur = olap_conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with (
        src_cur.copy(copy_out, compiled.construct_params(params)) as out,
        dst_cur.copy(copy_in) as into,
    ):
        for block in out:
            into.write(block)
    if rollup.write_mode != WriteMode.APPEND_ONLY:
        return None
    return _insert_landed(rollup, olap_conn)


def _qualified(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)
