"""Random draws shared by the parts of a tenant's synthetic data."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analytics_pipeline.demo.size import DemoSize

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

# The missing value for `np.where`: its stubs take arrays, not a bare None, and a 0-d object
# array is the same value to numpy (the result is an object array either way).
NULL = np.array(None, dtype=object)


@dataclass(frozen=True)
class Tenant:
    """What every part of one tenant's generation shares. The parts run in a fixed order and
    draw from the one generator, so the same seed always gives the same rows."""

    size: DemoSize
    index: int
    tenant_id: str
    rng: np.random.Generator
    first: np.datetime64
    as_of: np.datetime64


def ts(values: np.ndarray) -> np.ndarray:
    """UTC instants as naive datetime64[us]; `_copy` writes them with an explicit +00 offset."""
    return np.asarray(values, dtype="datetime64[us]")


def maybe(rng: np.random.Generator, p: float, n: int) -> np.ndarray:
    return rng.random(n) < p


def later(
    rng: np.random.Generator,
    start: np.ndarray,
    hit: np.ndarray,
    mean_hours: float,
    as_of: np.datetime64,
) -> np.ndarray:
    """Event times after `start` for rows where `hit`, NaT where no event or not yet happened."""
    delay = (rng.exponential(mean_hours, len(start)) * 3600).astype("int64")
    t = start + delay.astype("timedelta64[s]")
    return np.where(hit & (t < as_of), t, np.datetime64("NaT"))
