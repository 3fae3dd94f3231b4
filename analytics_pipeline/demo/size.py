"""How much demo data to make: the generator's size knobs and seed."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from analytics_pipeline.errors import DemoDataError


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
