"""An independent implementation of the OLAP contract, in pandas, written from olap_tables.md.

It shares no code with the pipeline: it reads raw OLTP rows and aggregates them in Python, so a
test that compares the two catches a wrong SQL definition rather than re-computing its figures.
Each function returns the contract's rows for a set of (tenant_id, date) partitions, in the
comparable form of `normalize`.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pandas as pd
import sqlalchemy as sa

Partitions = set[tuple[str, dt.date]]

OUTCOMES = [
    "sent",
    "delivered",
    "opened_tracked",
    "clicked_tracked",
    "replied",
    "bounced",
    "unsubscribed",
    "spam_complaints",
]
RATIOS = {"limit_utilization", "inbox_rate"}

GRAINS = {
    "campaign_analytics": ["tenant_id", "date", "campaign_id"],
    "sequence_step_analytics": ["tenant_id", "date", "campaign_id", "sequence_step_id"],
    "mailbox_analytics": ["tenant_id", "date", "mailbox_id"],
    "lead_analytics": ["tenant_id", "date", "campaign_id"],
    "warmup_analytics": ["tenant_id", "date", "mailbox_id"],
    "billing_analytics": ["tenant_id", "date", "currency"],
    "admin_audit_log": ["tenant_id", "date", "action_id"],
}


def read_source(engine: sa.Engine, table: str) -> pd.DataFrame:
    source = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        return pd.read_sql_query(sa.select(source), conn)


def _utc_date(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).dt.date


def _in(frame: pd.DataFrame, ts_col: str, partitions: Partitions) -> pd.DataFrame:
    f = frame[frame[ts_col].notna()].copy()
    f["date"] = _utc_date(f[ts_col])
    keep = [(t, d) in partitions for t, d in zip(f["tenant_id"], f["date"], strict=True)]
    return f[keep]


def _flags(e: pd.DataFrame) -> pd.DataFrame:
    e = e.copy()
    e["sent"] = 1
    e["delivered"] = (e["status"] == "delivered").astype(int)
    e["opened_tracked"] = e["opened"].notna().astype(int)
    e["clicked_tracked"] = e["clicked"].notna().astype(int)
    e["replied"] = e["replied"].notna().astype(int)
    e["bounced"] = e["bounce_type"].notna().astype(int)
    e["unsubscribed"] = e["unsubscribed"].notna().astype(int)
    e["spam_complaints"] = e["complaint"].notna().astype(int)
    e["hard_bounced"] = (e["bounce_type"] == "hard").astype(int)
    e["soft_bounced"] = (e["bounce_type"] == "soft").astype(int)
    return e


def campaign_analytics(src: dict[str, pd.DataFrame], partitions: Partitions) -> pd.DataFrame:
    e = _flags(_in(src["emails"], "sent_at", partitions))
    grain = GRAINS["campaign_analytics"]
    return normalize(e.groupby(grain, dropna=False)[OUTCOMES].sum().reset_index(), grain)


def sequence_step_analytics(src, partitions: Partitions) -> pd.DataFrame:
    e = _flags(_in(src["emails"], "sent_at", partitions))
    steps = src["sequence_steps"][["id", "step_number"]].rename(columns={"id": "sequence_step_id"})
    e = e.merge(steps, on="sequence_step_id", how="left")
    grain = GRAINS["sequence_step_analytics"]
    out = (
        e.groupby(grain, dropna=False)
        .agg(step_number=("step_number", "first"), **{m: (m, "sum") for m in OUTCOMES})
        .reset_index()
    )
    return normalize(out, grain)


def mailbox_analytics(src, partitions: Partitions) -> pd.DataFrame:
    e = _flags(_in(src["emails"], "sent_at", partitions))
    cols = ["sent", "delivered", "replied", "spam_complaints", "hard_bounced", "soft_bounced"]
    grain = GRAINS["mailbox_analytics"]
    out = e.groupby(grain, dropna=False)[cols].sum().reset_index()
    limits = src["mailboxes"].set_index("id")["daily_limit"]
    out["daily_limit"] = out["mailbox_id"].map(limits)
    out["limit_utilization"] = [
        None if lim == 0 else Decimal(int(s)) / Decimal(int(lim))
        for s, lim in zip(out["sent"], out["daily_limit"], strict=True)
    ]
    return normalize(out, grain)


LEAD_MILESTONES = {
    "leads_created": "created_at",
    "leads_contacted": "first_contacted_at",
    "leads_replied": "first_replied_at",
    "leads_converted": "converted_at",
    "leads_unsubscribed": "unsubscribed_at",
}


def lead_analytics(src, partitions: Partitions) -> pd.DataFrame:
    parts = []
    for name, col in LEAD_MILESTONES.items():
        f = _in(src["leads"], col, partitions)[["tenant_id", "date", "campaign_id"]]
        f[name] = 1
        parts.append(f)
    events = pd.concat(parts, ignore_index=True).fillna(dict.fromkeys(LEAD_MILESTONES, 0))
    grain = GRAINS["lead_analytics"]
    out = events.groupby(grain, dropna=False)[list(LEAD_MILESTONES)].sum().reset_index()
    return normalize(out, grain)


def warmup_analytics(src, partitions: Partitions) -> pd.DataFrame:
    w = _in(src["warmup_emails"], "sent_at", partitions)
    w["warmup_sent"] = 1
    for p in ("inbox", "spam", "promotions", "missing"):
        w[f"landed_{p}"] = (w["landed_in"] == p).astype(int)
    w["pending"] = w["landed_in"].isna().astype(int)
    w["replied"] = w["replied"].notna().astype(int)
    w["rescued_from_spam"] = w["rescued_from_spam"].notna().astype(int)
    counts = [
        "warmup_sent",
        "landed_inbox",
        "landed_spam",
        "landed_promotions",
        "landed_missing",
        "pending",
        "replied",
        "rescued_from_spam",
    ]
    grain = GRAINS["warmup_analytics"]
    out = w.groupby(grain, dropna=False)[counts].sum().reset_index()
    placed = out["warmup_sent"] - out["pending"]
    out["inbox_rate"] = [
        None if p == 0 else Decimal(int(i)) / Decimal(int(p))
        for i, p in zip(out["landed_inbox"], placed, strict=True)
    ]
    return normalize(out, grain)


BILLING = [
    "invoices_issued",
    "invoiced_cents",
    "paid_cents",
    "refunded_cents",
    "mrr_cents",
    "active_seats",
]


def billing_analytics(src, partitions: Partitions) -> pd.DataFrame:
    inv = src["invoices"]
    rows = []
    issued = _in(inv[inv["status"] != "void"], "issued_at", partitions)
    rows += [
        (r.tenant_id, r.date, r.currency, 1, r.amount_cents, 0, 0, 0, 0)
        for r in issued.itertuples()
    ]
    paid = _in(inv, "paid_at", partitions)
    rows += [
        (r.tenant_id, r.date, r.currency, 0, 0, r.amount_cents, 0, 0, 0) for r in paid.itertuples()
    ]
    refunded = _in(inv, "refunded_at", partitions)
    rows += [
        (r.tenant_id, r.date, r.currency, 0, 0, 0, r.amount_refunded_cents, 0, 0)
        for r in refunded.itertuples()
    ]
    subs = src["subscriptions"]
    for tenant, day in partitions:
        day_end = pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
        active = subs[
            (subs["tenant_id"] == tenant)
            & (subs["started_at"] < day_end)
            & (subs["canceled_at"].isna() | (subs["canceled_at"] >= day_end))
        ]
        rows += [
            (tenant, day, r.currency, 0, 0, 0, 0, r.mrr_cents, r.seats) for r in active.itertuples()
        ]
    frame = pd.DataFrame(rows, columns=["tenant_id", "date", "currency", *BILLING])
    grain = GRAINS["billing_analytics"]
    out = frame.groupby(grain, dropna=False)[BILLING].sum().reset_index()
    out = out[(out[BILLING] != 0).any(axis=1)]
    return normalize(out, grain)


AUDIT = [
    "occurred_at",
    "recorded_at",
    "actor_id",
    "actor_role",
    "action",
    "target_type",
    "target_id",
    "ip_address",
    "details",
]


def admin_audit_log(src, partitions: Partitions) -> pd.DataFrame:
    a = _in(src["admin_actions"], "occurred_at", partitions).rename(columns={"id": "action_id"})
    grain = GRAINS["admin_audit_log"]
    return normalize(a[[*grain, *AUDIT]].reset_index(drop=True), grain)


ORACLES = {
    "campaign_analytics": campaign_analytics,
    "sequence_step_analytics": sequence_step_analytics,
    "mailbox_analytics": mailbox_analytics,
    "lead_analytics": lead_analytics,
    "warmup_analytics": warmup_analytics,
    "billing_analytics": billing_analytics,
    "admin_audit_log": admin_audit_log,
}
SOURCES = (
    "emails",
    "sequence_steps",
    "mailboxes",
    "leads",
    "warmup_emails",
    "invoices",
    "subscriptions",
    "admin_actions",
)


def read_sources(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    return {name: read_source(engine, name) for name in SOURCES}


def _value(col: str, v):
    if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NaT:
        return None
    if col in RATIOS:
        return round(float(v), 12)
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if hasattr(v, "item") and not isinstance(v, str):  # numpy scalars
        return v.item()
    if isinstance(v, Decimal):
        return int(v)
    return v


def normalize(frame: pd.DataFrame, grain: list[str]) -> pd.DataFrame:
    """Comparable form: None for NULL, Python scalars, ratios rounded, sorted by grain."""
    records = [
        {col: _value(col, v) for col, v in zip(frame.columns, row, strict=True)}
        for row in frame.itertuples(index=False, name=None)
    ]

    def key(rec):
        return tuple((rec[g] is None, "" if rec[g] is None else str(rec[g])) for g in grain)

    records.sort(key=key)
    return pd.DataFrame(records, columns=list(frame.columns), dtype=object)


def read_table(engine: sa.Engine, table: str, columns: list[str], grain: list[str]) -> pd.DataFrame:
    t = sa.table(table, *(sa.column(c) for c in columns), schema="analytics")
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(sa.select(*t.c)).all(), columns=columns)
    return normalize(frame, grain)


def assert_tables_exact(
    olap: sa.Engine,
    sources: dict[str, pd.DataFrame],
    partitions: Partitions,
    columns: dict[str, list[str]],
) -> None:
    """Each OLAP table (name -> its columns) holds exactly the oracle's rows for `partitions`."""
    for table, cols in columns.items():
        expected = ORACLES[table](sources, partitions).to_dict("records")
        assert expected, f"the test data should give {table} rows"
        got = read_table(olap, table, cols, GRAINS[table]).to_dict("records")
        assert got == expected, table
