"""Synthetic OLTP data shaped like the product's (`bulk.py` loads it with COPY).

Deterministic: the same `DemoSize` and seed give the same rows (each tenant draws from its own
seed stream, so a tenant's rows do not depend on how many tenants are generated). Realistic where
the pipeline cares: opens, clicks and replies land hours to days after the send (and are NULL when
they would fall after `as_of`), some emails are still queued (sent_at NULL), some have no campaign
or step, warmup placement is pending for the newest sends, invoices are voided or refunded, and
subscriptions are cancelled, one of them exactly at a day boundary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics_pipeline.demo import account, outreach
from analytics_pipeline.demo.draws import Tenant
from analytics_pipeline.demo.size import DemoSize

__all__ = ["DemoSize", "TenantData", "generate_tenant", "iter_tenants"]


@dataclass
class TenantData:
    tables: dict[str, pd.DataFrame]


def generate_tenant(size: DemoSize, index: int, tenant_id: str) -> TenantData:
    """All OLTP rows of one tenant, as DataFrames keyed by table name."""
    rng = np.random.default_rng(np.random.SeedSequence([size.seed, index]))
    t = Tenant(size, index, tenant_id, rng, np.datetime64(size.first_day, "us"), size.as_of)
    weight = 0.5 + rng.random()  # tenants differ in size
    mailboxes, mbx_ids, warmup = outreach.mailboxes(t)
    campaigns, sequence_steps, cmp_ids, steps_per_cmp, step_ids = outreach.campaigns(t)
    leads, emails = outreach.outreach(t, weight, mbx_ids, cmp_ids, steps_per_cmp, step_ids)
    warmup_emails = outreach.warmup(t, mbx_ids, warmup)
    subscriptions, invoices = account.billing(t)
    admin_actions = account.admin_actions(t)
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


def iter_tenants(size: DemoSize) -> Iterator[tuple[str, TenantData]]:
    for i, tenant_id in enumerate(size.tenant_ids()):
        yield tenant_id, generate_tenant(size, i, tenant_id)
