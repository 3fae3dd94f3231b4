"""Loading the synthetic dataset into PostgreSQL in bulk: CSV text streamed through COPY."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import psycopg
import sqlalchemy as sa

from analytics_pipeline.demo.generator import DemoSize, iter_tenants

# Parents before children, for the foreign keys.
LOAD_ORDER = (
    "mailboxes",
    "campaigns",
    "sequence_steps",
    "leads",
    "emails",
    "warmup_emails",
    "subscriptions",
    "invoices",
    "admin_actions",
)


def _csv_text(frame: pd.DataFrame) -> str:
    out = frame.copy(deep=False)
    for name in out.columns:
        col = out[name].to_numpy()
        if np.issubdtype(col.dtype, np.datetime64):
            # Vectorised formatting: pandas' per-value strftime dominated the load time.
            text = np.char.add(np.datetime_as_string(col, unit="us"), "+00").astype(object)
            text[np.isnat(col)] = None
            out[name] = text
    buf = io.StringIO()
    out.to_csv(buf, index=False, header=False)
    return buf.getvalue()


def _copy(cursor: psycopg.Cursor[Any], table: str, frame: pd.DataFrame) -> None:
    cols = ", ".join(frame.columns)
    with cursor.copy("COPY " + table + " (" + cols + ") FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(_csv_text(frame))


@dataclass(frozen=True)
class LoadReport:
    rows: dict[str, int]
    size: DemoSize

    def counts(self) -> str:
        """The rows loaded per table, for a person: "tenants 20, emails 2,585, ..."."""
        return ", ".join(f"{table} {n:,}" for table, n in self.rows.items())


def load(
    conn: sa.Connection, size: DemoSize, on_tenant: Callable[[int], None] | None = None
) -> LoadReport:
    """Generate and COPY the dataset into the OLTP tables, in the transaction of `conn`.

    `on_tenant` is called after each tenant with the number of rows it loaded (progress)."""
    # COPY is psycopg 3's own API, below SQLAlchemy: every OLTP URL is moved onto that driver
    # (settings.PSYCOPG3), and a checked-out connection always has its driver connection.
    driver = cast(psycopg.Connection[Any], conn.connection.driver_connection)
    cursor = driver.cursor()
    if conn.execute(sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar():
        # Bulk-load as pg_restore does: skip the per-row foreign-key and updated_at triggers for
        # this transaction (the generator keeps every reference valid; updated_at then takes its
        # column default, the load's time, as the trigger would have). Needs a superuser.
        conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
    rows: dict[str, int] = {"tenants": size.tenants}
    tenants = pd.DataFrame(
        {
            "id": size.tenant_ids(),
            "name": [f"Tenant {i}" for i in range(1, size.tenants + 1)],
            "status": "active",
            # Each tenant exists from the first day of its data (where the date dimension starts,
            # analytics_pipeline/history.py), not from the load.
            "created_at": pd.Timestamp(size.first_day, tz="UTC"),
        }
    )
    _copy(cursor, "tenants", tenants)
    for _, data in iter_tenants(size):
        for table in LOAD_ORDER:
            frame = data.tables[table]
            _copy(cursor, table, frame)
            rows[table] = rows.get(table, 0) + len(frame)
        if on_tenant is not None:
            on_tenant(sum(len(data.tables[t]) for t in LOAD_ORDER))
    return LoadReport(rows=rows, size=size)
