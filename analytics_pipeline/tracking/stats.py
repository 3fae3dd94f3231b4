"""The tracker's counters, shared by the facade (tracked, violations) and the worker (the rest)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrackerStats:
    """Counters since the tracker started (approximate under concurrent callers)."""

    tracked: int = 0
    delivered: int = 0
    stored: int = 0
    redelivered: int = 0
    rejected: int = 0
    lost: int = 0
    contract_violations: int = 0
    errors: int = 0
