"""Synthetic subscriptions, invoices and admin actions of a tenant."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics_pipeline.demo.draws import ACTIONS, CURRENCIES, DAY, HOUR, Tenant, later, maybe, ts


def billing(t: Tenant) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tenant's subscriptions and their monthly invoices."""
    index = t.index
    rng, first, as_of, size, tenant_id = t.rng, t.first, t.as_of, t.size, t.tenant_id
    # Billing: one or two subscriptions, monthly invoices.
    currency = CURRENCIES[index % len(CURRENCIES)]
    n_sub = 1 + int(index % 2 == 0)
    sub_ids = [f"{tenant_id}-sub-{j}" for j in range(n_sub)]
    started = np.array(
        [
            first - int(rng.integers(10, 400)) * DAY + HOUR * int(rng.integers(0, 24))
            for _ in range(n_sub)
        ]
    )
    canceled = np.array([np.datetime64("NaT")] * n_sub, dtype="datetime64[us]")
    if n_sub > 1:  # cancelled exactly at a day's end (= the next day's midnight)
        canceled[1] = first + (size.days // 2) * DAY
    seats = rng.integers(1, 50, n_sub)
    subscriptions = pd.DataFrame(
        {
            "id": sub_ids,
            "tenant_id": tenant_id,
            "plan": rng.choice(["starter", "growth", "pro"], n_sub),
            "seats": seats,
            "mrr_cents": seats * 2_900,
            "currency": currency,
            "status": np.where(np.isnat(canceled), "active", "canceled"),
            "started_at": ts(started),
            "canceled_at": ts(canceled),
        }
    )
    inv_rows = []
    for s_id, s_start, s_end, s_seats in zip(sub_ids, started, canceled, seats, strict=True):
        issued = s_start
        k = 0
        while issued < as_of and (np.isnat(s_end) or issued < s_end):
            if issued >= first - 31 * DAY:
                inv_rows.append((f"{s_id}-inv-{k:03d}", s_id, issued, int(s_seats) * 2_900))
            issued = issued + 30 * DAY
            k += 1
    ni = len(inv_rows)
    inv_issued = np.array([r[2] for r in inv_rows], dtype="datetime64[us]")
    inv_status = rng.choice(["paid", "open", "void", "uncollectible"], ni, p=[0.8, 0.1, 0.06, 0.04])
    paid_at = np.where(
        inv_status == "paid",
        inv_issued + (rng.random(ni) * 5 * 86_400e6).astype("timedelta64[us]"),
        np.datetime64("NaT"),
    )
    paid_at = np.where(paid_at < as_of, paid_at, np.datetime64("NaT"))
    inv_status = np.where((inv_status == "paid") & np.isnat(paid_at), "open", inv_status)
    refunded = (inv_status == "paid") & maybe(rng, 0.1, ni)
    refunded_at = later(rng, np.where(np.isnat(paid_at), inv_issued, paid_at), refunded, 96, as_of)
    amounts = np.array([r[3] for r in inv_rows], dtype="int64")
    invoices = pd.DataFrame(
        {
            "id": [r[0] for r in inv_rows],
            "tenant_id": tenant_id,
            "subscription_id": [r[1] for r in inv_rows],
            "currency": currency,
            "amount_cents": amounts,
            "status": inv_status,
            "issued_at": ts(inv_issued),
            "paid_at": ts(paid_at),
            "amount_refunded_cents": np.where(np.isnat(refunded_at), 0, amounts // 2),
            "refunded_at": ts(refunded_at),
        }
    )
    return subscriptions, invoices


def admin_actions(t: Tenant) -> pd.DataFrame:
    """The tenant's admin audit trail: a few actions a day, recorded shortly after they occur."""
    rng, first, size, tenant_id = t.rng, t.first, t.size, t.tenant_id
    a_per_day = rng.poisson(min(4, max(1, size.emails_per_day // 10)), size.days)
    an = int(a_per_day.sum())
    a_day = np.repeat(np.arange(size.days), a_per_day)
    occurred = first + a_day * DAY + (rng.random(an) * 86_400e6).astype("timedelta64[us]")
    recorded = occurred + (rng.exponential(0.2, an) * 3600e6).astype("timedelta64[us]")
    admin_actions = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "actor_id": rng.choice([f"{tenant_id}-admin-{j}" for j in range(3)], an),
            "actor_role": rng.choice(["owner", "admin"], an),
            "action": rng.choice(ACTIONS, an),
            "target_type": rng.choice(np.array(["user", "mailbox", "campaign", None]), an),
            "target_id": [f"obj-{int(x)}" for x in rng.integers(1, 1000, an)],
            "ip_address": [f"203.0.113.{int(x)}" for x in rng.integers(1, 255, an)],
            "details": [f'{{"seq": {j}}}' for j in range(an)],
            "occurred_at": ts(occurred),
            "recorded_at": ts(recorded),
        }
    )
    return admin_actions
