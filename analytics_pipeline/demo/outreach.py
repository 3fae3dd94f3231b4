"""Synthetic mailboxes, campaigns and their steps, leads, emails and warmup traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analytics_pipeline.demo.draws import DAY, HOUR, NULL, Tenant, later, maybe, ts


def mailboxes(t: Tenant) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The tenant's mailboxes, with their ids and which of them warm up (same order)."""
    rng, tenant_id = t.rng, t.tenant_id
    n_mbx = int(rng.integers(3, 9))
    mbx_ids = np.array([f"{tenant_id}-mbx-{j:02d}" for j in range(n_mbx)])
    daily_limit = rng.choice([0, 50, 100, 200, 400], n_mbx, p=[0.05, 0.2, 0.35, 0.3, 0.1])
    warmup = maybe(rng, 0.6, n_mbx)
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
    return mailboxes, mbx_ids, warmup


def campaigns(
    t: Tenant,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Campaigns and their steps, with the campaign ids, steps per campaign and step ids."""
    rng, tenant_id = t.rng, t.tenant_id
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
    return campaigns, sequence_steps, cmp_ids, steps_per_cmp, step_ids


def outreach(
    t: Tenant,
    weight: float,
    mbx_ids: np.ndarray,
    cmp_ids: np.ndarray,
    steps_per_cmp: np.ndarray,
    step_ids: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leads and emails (drawn together: an email's lead is one of the tenant's leads)."""
    n_cmp = len(cmp_ids)
    rng, first, as_of, size, tenant_id = t.rng, t.first, t.as_of, t.size, t.tenant_id
    # Emails: a Poisson count per day, uniform within the day.
    per_day = rng.poisson(size.emails_per_day * weight, size.days)
    n = int(per_day.sum())
    day_idx = np.repeat(np.arange(size.days), per_day)
    sent_at = first + day_idx * DAY + (rng.random(n) * 86_400_000_000).astype("timedelta64[us]")
    # Every 500th email of a tenant is sent exactly at midnight UTC: the day-boundary edge case.
    sent_at[::500] = first + day_idx[::500] * DAY

    n_leads = max(1, n // 4)
    lead_ids = np.array([f"{tenant_id}-lead-{j:06d}" for j in range(n_leads)])
    lead_cmp = np.where(maybe(rng, 0.9, n_leads), rng.choice(cmp_ids, n_leads), NULL)
    lead_created = (
        first
        - 5 * DAY
        + (rng.random(n_leads) * (size.days + 5) * 86_400e6).astype("timedelta64[us]")
    )
    contacted = later(rng, lead_created, maybe(rng, 0.8, n_leads), 24, as_of)
    replied_l = later(
        rng,
        np.where(np.isnat(contacted), lead_created, contacted),
        ~np.isnat(contacted) & maybe(rng, 0.15, n_leads),
        72,
        as_of,
    )
    converted = later(
        rng,
        np.where(np.isnat(replied_l), lead_created, replied_l),
        ~np.isnat(replied_l) & maybe(rng, 0.3, n_leads),
        120,
        as_of,
    )
    unsub_l = later(
        rng,
        np.where(np.isnat(contacted), lead_created, contacted),
        ~np.isnat(contacted) & maybe(rng, 0.03, n_leads),
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
            "first_name": rng.choice(np.array(["Ada", "Grace", "Alan", None]), n_leads),
            "last_name": rng.choice(np.array(["Lovelace", "Hopper", "Turing", None]), n_leads),
            "status": lead_status,
            "created_at": ts(lead_created),
            "first_contacted_at": ts(contacted),
            "first_replied_at": ts(replied_l),
            "converted_at": ts(converted),
            "unsubscribed_at": ts(unsub_l),
        }
    )

    one_off = maybe(rng, 0.05, n)
    e_cmp_idx = rng.integers(0, n_cmp, n)
    e_cmp = np.where(one_off, NULL, cmp_ids[e_cmp_idx])
    # A step of the email's own campaign (or none).
    offsets = np.concatenate([[0], np.cumsum(steps_per_cmp)[:-1]])
    e_step_idx = offsets[e_cmp_idx] + (rng.random(n) * steps_per_cmp[e_cmp_idx]).astype(int)
    e_step = np.where(one_off | maybe(rng, 0.1, n), NULL, step_ids[e_step_idx])
    status = rng.choice(["delivered", "sent", "bounced", "failed"], n, p=[0.9, 0.04, 0.04, 0.02])
    delivered = status == "delivered"
    bounced = status == "bounced"
    bounce_type = np.where(bounced, rng.choice(["hard", "soft"], n, p=[0.4, 0.6]), NULL)
    opened = later(rng, sent_at, delivered & maybe(rng, 0.45, n), 20, as_of)
    clicked = later(
        rng,
        np.where(np.isnat(opened), sent_at, opened),
        ~np.isnat(opened) & maybe(rng, 0.25, n),
        1,
        as_of,
    )
    replied = later(rng, sent_at, delivered & maybe(rng, 0.06, n), 40, as_of)
    unsub = later(rng, sent_at, delivered & maybe(rng, 0.01, n), 30, as_of)
    complaint = later(rng, sent_at, delivered & maybe(rng, 0.002, n), 30, as_of)
    # Queued emails: not sent yet, so no day and no outcome.
    n_queued = max(1, n // 100)
    emails = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "campaign_id": np.concatenate([e_cmp, [cmp_ids[0]] * n_queued]),
            "sequence_step_id": np.concatenate([e_step, [None] * n_queued]),
            "mailbox_id": np.concatenate([rng.choice(mbx_ids, n), rng.choice(mbx_ids, n_queued)]),
            "lead_id": np.concatenate(
                [np.where(maybe(rng, 0.05, n), NULL, rng.choice(lead_ids, n)), [None] * n_queued]
            ),
            "status": np.concatenate([status, ["queued"] * n_queued]),
            "sent_at": ts(np.concatenate([sent_at, [np.datetime64("NaT")] * n_queued])),
            "opened": ts(np.concatenate([opened, [np.datetime64("NaT")] * n_queued])),
            "clicked": ts(np.concatenate([clicked, [np.datetime64("NaT")] * n_queued])),
            "replied": ts(np.concatenate([replied, [np.datetime64("NaT")] * n_queued])),
            "bounce_type": np.concatenate([bounce_type, [None] * n_queued]),
            "unsubscribed": ts(np.concatenate([unsub, [np.datetime64("NaT")] * n_queued])),
            "complaint": ts(np.concatenate([complaint, [np.datetime64("NaT")] * n_queued])),
        }
    )
    return leads, emails


def warmup(t: Tenant, mbx_ids: np.ndarray, warmup: np.ndarray) -> pd.DataFrame:
    """Warmup traffic of the warmup-enabled mailboxes (the first mailbox when none is)."""
    rng, first, as_of, size, tenant_id = t.rng, t.first, t.as_of, t.size, t.tenant_id
    # Warmup: ~8 a day per warmup-enabled mailbox; placement unknown for the last day's sends.
    wm = mbx_ids[warmup] if warmup.any() else mbx_ids[:1]
    # About 8 a day per mailbox, but never more than a tenth of the outreach volume, so that
    # wide, thin datasets (many tenants, few emails) stay small.
    w_per_day = rng.poisson(min(8 * len(wm), max(1, size.emails_per_day // 10)), size.days)
    wn = int(w_per_day.sum())
    w_day = np.repeat(np.arange(size.days), w_per_day)
    w_sent = first + w_day * DAY + (rng.random(wn) * 86_400e6).astype("timedelta64[us]")
    landed = rng.choice(["inbox", "spam", "promotions", "missing"], wn, p=[0.8, 0.08, 0.1, 0.02])
    landed = np.where(w_sent > as_of - 12 * HOUR, NULL, landed)
    warmup_emails = pd.DataFrame(
        {
            "tenant_id": tenant_id,
            "mailbox_id": rng.choice(wm, wn),
            "sent_at": ts(w_sent),
            "landed_in": landed,
            "replied": ts(later(rng, w_sent, maybe(rng, 0.3, wn), 6, as_of)),
            "rescued_from_spam": ts(later(rng, w_sent, landed == "spam", 3, as_of)),
        }
    )
    return warmup_emails
