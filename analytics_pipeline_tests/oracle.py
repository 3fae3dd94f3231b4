"""An independent implementation of the OLAP contract, in pandas, written from olap_tables.md.

It shares no code with the pipeline: it reads raw OLTP rows and aggregates them in Python, so a
test that compares the two catches a wrong SQL definition rather than re-computing its figures.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

CAMPAIGN_METRICS = [
    "sent",
    "delivered",
    "opened_tracked",
    "clicked_tracked",
    "replied",
    "bounced",
    "unsubscribed",
    "spam_complaints",
]


def _utc_date(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).dt.date


def read_emails(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql_query(sa.text("SELECT * FROM emails"), conn)


def campaign_analytics(emails: pd.DataFrame, partitions: set[tuple[str, dt.date]]) -> pd.DataFrame:
    """The contract's campaign_analytics rows for `partitions`, sorted by grain."""
    e = emails[emails["sent_at"].notna()].copy()
    e["date"] = _utc_date(e["sent_at"])
    e = e[[(t, d) in partitions for t, d in zip(e["tenant_id"], e["date"], strict=True)]]
    e["sent"] = 1
    e["delivered"] = (e["status"] == "delivered").astype(int)
    e["opened_tracked"] = e["opened"].notna().astype(int)
    e["clicked_tracked"] = e["clicked"].notna().astype(int)
    e["replied"] = e["replied"].notna().astype(int)
    e["bounced"] = e["bounce_type"].notna().astype(int)
    e["unsubscribed"] = e["unsubscribed"].notna().astype(int)
    e["spam_complaints"] = e["complaint"].notna().astype(int)
    out = (
        e.groupby(["tenant_id", "date", "campaign_id"], dropna=False)[CAMPAIGN_METRICS]
        .sum()
        .reset_index()
    )
    return normalize(out, ["tenant_id", "date", "campaign_id"])


def normalize(frame: pd.DataFrame, grain: list[str]) -> pd.DataFrame:
    """Comparable form: NULL keys as None, ints as Python ints, sorted by grain."""
    frame = frame.astype(object).where(frame.notna(), None)
    for col in frame.columns:
        if col not in grain and col != "date":
            frame[col] = frame[col].map(lambda v: None if v is None else int(v))
    key = [frame[g].map(lambda v: (v is None, "" if v is None else str(v))) for g in grain]
    order = sorted(range(len(frame)), key=lambda i: tuple(k.iloc[i] for k in key))
    return frame.iloc[order].reset_index(drop=True)


def read_table(engine: sa.Engine, table: str, columns: list[str], grain: list[str]) -> pd.DataFrame:
    t = sa.table(table, *(sa.column(c) for c in columns), schema="analytics")
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(sa.select(*t.c)).all(), columns=columns)
    return normalize(frame, grain)
