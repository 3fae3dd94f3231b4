"""Synthetic OLTP data shaped like the product's, loaded with COPY.

Deterministic: the same `DemoSize` and seed give the same rows (each tenant draws from its own
seed stream, so a tenant's rows do not depend on how many tenants are generated). Realistic where
the pipeline cares: opens, clicks and replies land hours to days after the send (and are NULL when
they would fall after `as_of`), some emails are still queued (sent_at NULL), some have no campaign
or step, warmup placement is pending for the newest sends, invoices are voided or refunded, and
subscriptions are cancelled, one of them exactly at a day boundary.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analytics_pipeline.errors import DemoDataError

DAY = np.timedelta64(1, "D")
HOUR = np.timedelta64(1, "h")
CURRENCIES = ("USD", "EUR", "GBP")
ACTIONS = (
    "user.invite",
    "user.remove",
    "role.change",
    "mailbox.connect",
    "mailbox.disconnect",
    "campaign.delete",
    "billing.update",
    "export.leads",
    "api_key.create",
    "sso.configure",
)


@dataclass(frozen=True)
class DemoSize:
    """How much data to make. `emails_per_day` is per tenant, on average."""

    tenants: int = 5
    days: int = 90
    emails_per_day: int = 700
    seed: int = 42
    end_date: dt.date | None = None  # last day with data; default: yesterday (UTC)

    def __post_init__(self) -> None:
        for name, lo, hi in (
            ("tenants", 1, 10_000),
            ("days", 1, 3_660),
            ("emails_per_day", 0, 10_000_000),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not lo <= value <= hi:
                raise DemoDataError(
                    f"{name}={value!r} is out of range: use a whole number from {lo} to {hi}"
                )

    @property
    def last_day(self) -> dt.date:
        return self.end_date or (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1))

    @property
    def first_day(self) -> dt.date:
        return self.last_day - dt.timedelta(days=self.days - 1)

    @property
    def as_of(self) -> np.datetime64:
        """The moment the dataset describes: midnight UTC after the last day."""
        return np.datetime64(self.last_day + dt.timedelta(days=1), "us")

    def tenant_ids(self) -> list[str]:
        return [f"tenant-{i:03d}" for i in range(1, self.tenants + 1)]


@dataclass
class TenantData:
    tables: dict[str, pd.DataFrame]


def _ts(values: np.ndarray) -> np.ndarray:
    """UTC instants as naive datetime64[us]; `_copy` writes them with an explicit +00 offset."""
    return np.asarray(values, dtype="datetime64[us]")


def _maybe(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return rng.random(n) < p


def _later(rng, start: np.ndarray, hit: np.ndarray, mean_hours: float, as_of) -> np.ndarray:
    """Event times after `start` for rows where `hit`, NaT where no event or not yet happened."""
    delay = (rng.exponential(mean_hours, len(start)) * 3600).astype("int64")
    t = start + delay.astype("timedelta64[s]")
    return np.where(hit & (t < as_of), t, np.datetime64("NaT"))


def generate_tenant(size: DemoSize, index: int, tenant_id: str) -> TenantData:
    """All OLTP rows of one tenant, as DataFrames keyed by table name."""
    rng = np.random.default_rng(np.random.SeedSequence([size.seed, index]))
    first = np.datetime64(size.first_day, "us")
    as_of = size.as_of
    weight = 0.5 + rng.random()  # tenants differ in size

    n_mbx = int(rng.integers(3, 9))
    mbx_ids = np.array([f"{tenant_id}-mbx-{j:02d}" for j in range(n_mbx)])
    daily_limit = rng.choice([0, 50, 100, 200, 400], n_mbx, p=[0.05, 0.2, 0.35, 0.3, 0.1])
    warmup = _maybe(rng, 0.6, n_mbx)
    mailboxes = pd.DataFrame(
        {
            "id": mbx_ids,
            "tenant_id": tenant_id,
            "email_address": [f"sender{j}@{tenant_id}.example" for j in range(n_mbx)],
            "provider": rng.choice(["google", "microsoft", "smtp"], n_mbx),
            "daily_limit": daily_limit,
            "warmup_enabled": warmup,
        }
    )

    n_cmp = int(rng.integers(2, 7))
    cmp_ids = np.array([f"{tenant_id}-cmp-{j:02d}" for j in range(n_cmp)])
    campaigns = pd.DataFrame(
        {
            "id": cmp_ids,
            "tenant_id": tenant_id,
            "name": [f"Campaign {j}" for j in range(n_cmp)],
            "status": rng.choice(["active", "paused", "completed", "draft"], n_cmp),
        }
    )
    steps_per_cmp = rng.integers(1, 5, n_cmp)
    step_cmp = np.repeat(cmp_ids, steps_per_cmp)
    step_no = np.concatenate([np.arange(1, k + 1) for k in steps_per_cmp])
    step_ids = np.array([f"{c}-s{k}" for c, k in zip(step_cmp, step_no, strict=True)])
    sequence_steps = pd.DataFrame(
        {
            "id": step_ids,
            "tenant_id": tenant_id,
            "campaign_id": step_cmp,
            "step_number": step_no,
            "subject": [f"Step {k}" for k in step_no],
            "delay_days": (step_no - 1) * 2,
        }
    )

    # Emails: a Poisson count per day, uniform within the day.
    per_day = rng.poisson(size.emails_per_day * weight, size.days)
    n = int(per_day.sum())
    day_idx = np.repeat(np.arange(size.days), per_day)
    sent_at = first + day_idx * DAY + (rng.random(n) * 86_400_000_000).astype("timedelta64[us]")
    # Every 500th email of a tenant is sent exactly at midnight UTC: the day-boundary edge case.
    sent_at[::500] = first + day_idx[::500] * DAY

    n_leads = max(1, n // 4)
    lead_ids = np.array([f"{tenant_id}-lead-{j:06d}" for j in range(n_leads)])
    lead_cmp = np.where(_maybe(rng, 0.9, n_leads), rng.choice(cmp_ids, n_leads), None)
    lead_created = (
        first
        - 5 * DAY
        + (rng.random(n_leads) * (size.days + 5) * 86_400e6).astype("timedelta64[us]")
    )
    contacted = _later(rng, lead_created, _maybe(rng, 0.8, n_leads), 24, as_of)
    replied_l = _later(
        rng,
        np.where(np.isnat(contacted), lead_created, contacted),
        ~np.isnat(contacted) & _maybe(rng, 0.15, n_leads),
        72,
        as_of,
    )
    converted = _later(
        rng,
        np.where(np.isnat(replied_l), lead_created, replied_l),
        ~np.isnat(replied_l) & _maybe(rng, 0.3, n_leads),
        120,
        as_of,
    )
    unsub_l = _later(
        rng,
        np.where(np.isnat(contacted), lead_created, contacted),
        ~np.isnat(contacted) & _maybe(rng, 0.03, n_leads),
        48,
        as_of,
    )
    lead_status = np.select(
        [~np.isnat(converted), ~np.isnat(unsub_l), ~np.isnat(replied_l), ~np.isnat(contacted)],
        ["converted", "unsubscribed", "replied", "contacted"],
        "new",
    )
    leads = pd.DataFrame(
        {
            "id": lead_ids,
            "tenant_id": tenant_id,
            "campaign_id": lead_cmp,
            "email": [f"lead{j}@prospect.example" for j in range(n_leads)],
            "first_name": rng.choice(["Ada", "Grace", "Alan", None], n_leads),
            "last_name": rng.choice(["Lovelace", "Hopper", "Turing", None], n_leads),
            "status": lead_status,
            "created_at": _ts(lead_created),
            "first_contacted_at": _ts(contacted),
            "first_replied_at": _ts(replied_l),
            "converted_at": _ts(converted),
            "unsubscribed_at": _ts(unsub_l),
        }
    )

    one_off = _maybe(rng, 0.05, n)
    e_cmp_idx = rng.integers(0, n_cmp, n)
    e_cmp = np.where(one_off, None, cmp_ids[e_cmp_idx])
    # A step of the email's own campaign (or none).
    offsets = np.concatenate([[0], np.cumsum(steps_per_cmp)[:-1]])
    e_step_idx = offsets[e_cmp_idx] + (rng.random(n) * steps_per_cmp[e_cmp_idx]).astype(int)
    e_step = np.where(one_off | _maybe(rng, 0.1, n), None, step_ids[e_step_idx])
    status = rng.choice(["delivered", "sent", "bounced", "failed"], n, p=[0.9, 0.04, 0.04, 0.02])
    delivered = status == "delivered"
    bounced = status == "bounced"
    bounce_type = np.where(bounced, rng.choice(["hard", "soft"], n, p=[0.4, 0.6]), None)
    opened = _later(rng, sent_at, delivered & _maybe(rng, 0.45, n), 20, as_of)
    clicked = _later(
        rng,
        np.where(np.isnat(opened), sent_at, opened),
        ~np.isnat(opened) & _maybe(rng, 0.25, n),
        1,
        as_of,
    )
    replied = _later(rng, sent_at, delivered & _maybe(rng, 0.06, n), 40, as_of)
    unsub = _later(rng, sent_at, delivered & _maybe(rng, 0.01, n), 30, as_of)
    complaint = _later(rng, sent_at, delivered & _maybe(rng, 0.002, n), 30, as_of)
    # Queued emails: not sent yet, so no day and no outcome.
    n_queued = max(1, n // 100)
    emails = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "campaign_id": np.concatenate([e_cmp, [cmp_ids[0]] * n_queued]),
            "sequence_step_id": np.concatenate([e_step, [None] * n_queued]),
            "mailbox_id": np.concatenate([rng.choice(mbx_ids, n), rng.choice(mbx_ids, n_queued)]),
            "lead_id": np.concatenate(
                [np.where(_maybe(rng, 0.05, n), None, rng.choice(lead_ids, n)), [None] * n_queued]
            ),
            "status": np.concatenate([status, ["queued"] * n_queued]),
            "sent_at": _ts(np.concatenate([sent_at, [np.datetime64("NaT")] * n_queued])),
            "opened": _ts(np.concatenate([opened, [np.datetime64("NaT")] * n_queued])),
            "clicked": _ts(np.concatenate([clicked, [np.datetime64("NaT")] * n_queued])),
            "replied": _ts(np.concatenate([replied, [np.datetime64("NaT")] * n_queued])),
            "bounce_type": np.concatenate([bounce_type, [None] * n_queued]),
            "unsubscribed": _ts(np.concatenate([unsub, [np.datetime64("NaT")] * n_queued])),
            "complaint": _ts(np.concatenate([complaint, [np.datetime64("NaT")] * n_queued])),
        }
    )

    # Warmup: ~8 a day per warmup-enabled mailbox; placement unknown for the last day's sends.
    wm = mbx_ids[warmup] if warmup.any() else mbx_ids[:1]
    # About 8 a day per mailbox, but never more than a tenth of the outreach volume, so that
    # wide, thin datasets (many tenants, few emails) stay small.
    w_per_day = rng.poisson(min(8 * len(wm), max(1, size.emails_per_day // 10)), size.days)
    wn = int(w_per_day.sum())
    w_day = np.repeat(np.arange(size.days), w_per_day)
    w_sent = first + w_day * DAY + (rng.random(wn) * 86_400e6).astype("timedelta64[us]")
    landed = rng.choice(["inbox", "spam", "promotions", "missing"], wn, p=[0.8, 0.08, 0.1, 0.02])
    landed = np.where(w_sent > as_of - 12 * HOUR, None, landed)
    warmup_emails = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "mailbox_id": rng.choice(wm, wn),
            "sent_at": _ts(w_sent),
            "landed_in": landed,
            "replied": _ts(_later(rng, w_sent, _maybe(rng, 0.3, wn), 6, as_of)),
            "rescued_from_spam": _ts(_later(rng, w_sent, landed == "spam", 3, as_of)),
        }
    )

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
            "started_at": _ts(started),
            "canceled_at": _ts(canceled),
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
    refunded = (inv_status == "paid") & _maybe(rng, 0.1, ni)
    refunded_at = _later(rng, np.where(np.isnat(paid_at), inv_issued, paid_at), refunded, 96, as_of)
    amounts = np.array([r[3] for r in inv_rows], dtype="int64")
    invoices = pd.DataFrame(
        {
            "id": [r[0] for r in inv_rows],
            "tenant_id": tenant_id,
            "subscription_id": [r[1] for r in inv_rows],
            "currency": currency,
            "amount_cents": amounts,
            "status": inv_status,
            "issued_at": _ts(inv_issued),
            "paid_at": _ts(paid_at),
            "amount_refunded_cents": np.where(np.isnat(refunded_at), 0, amounts // 2),
            "refunded_at": _ts(refunded_at),
        }
    )

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
            "target_type": rng.choice(["user", "mailbox", "campaign", None], an),
            "target_id": [f"obj-{int(x)}" for x in rng.integers(1, 1000, an)],
            "ip_address": [f"203.0.113.{int(x)}" for x in rng.integers(1, 255, an)],
            "details": [f'{{"seq": {j}}}' for j in range(an)],
            "occurred_at": _ts(occurred),
            "recorded_at": _ts(recorded),
        }
    )
    return TenantData(
        {
            "mailboxes": mailboxes,
            "campaigns": campaigns,
            "sequence_steps": sequence_steps,
            "leads": leads,
            "emails": emails,
            "warmup_emails": warmup_emails,
            "subscriptions": subscriptions,
            "invoices": invoices,
            "admin_actions": admin_actions,
        }
    )


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


def _copy(cursor, table: str, frame: pd.DataFrame) -> None:
    cols = ", ".join(frame.columns)
    with cursor.copy("COPY " + table + " (" + cols + ") FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(_csv_text(frame))


@dataclass(frozen=True)
class LoadReport:
    rows: dict[str, int]
    size: DemoSize


def iter_tenants(size: DemoSize) -> Iterator[tuple[str, TenantData]]:
    for i, tenant_id in enumerate(size.tenant_ids()):
        yield tenant_id, generate_tenant(size, i, tenant_id)


def load(conn: sa.Connection, size: DemoSize) -> LoadReport:
    """Generate and COPY the dataset into the OLTP tables, in the transaction of `conn`."""
    cursor = conn.connection.driver_connection.cursor()
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
        }
    )
    _copy(cursor, "tenants", tenants)
    for _, data in iter_tenants(size):
        for table in LOAD_ORDER:
            frame = data.tables[table]
            _copy(cursor, table, frame)
            rows[table] = rows.get(table, 0) + len(frame)
    return LoadReport(rows=rows, size=size)
