"""The delivery worker's states and the backoff that moves it between them.

Not thread-safe by itself: the worker (tracking/delivery.py) makes every call under its one
lock. Times are on the monotonic clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.Enum):
    """Where the worker is."""

    # Batches go to the sink as they fill or fall due.
    RUNNING = "running"
    # The sink failed: batches go to the outbox until the backoff ends, then RUNNING again.
    BACKING_OFF = "backing off"
    # Stopped: the batch in flight finishes, nothing new is sent, events put now go straight
    # to the outbox. Final.
    CLOSED = "closed"


@dataclass
class Lifecycle:
    """The state, with the backoff after consecutive failures (doubling, capped)."""

    retry_base_seconds: float
    retry_max_seconds: float
    state: State = State.RUNNING
    retry_at: float = 0.0
    failures: int = 0

    def backing_off(self, now: float) -> bool:
        """Whether the sink is being left alone at `now`; ends a backoff that has run out."""
        if self.state is State.BACKING_OFF and now >= self.retry_at:
            self.state = State.RUNNING
        return self.state is State.BACKING_OFF

    def failed(self, now: float) -> float:
        """A delivery failed at `now`: back off; returns for how many seconds."""
        self.failures += 1
        backoff = min(
            self.retry_max_seconds, self.retry_base_seconds * 2.0 ** min(self.failures - 1, 20)
        )
        self.retry_at = now + backoff
        if self.state is State.RUNNING:
            self.state = State.BACKING_OFF
        return backoff

    def succeeded(self) -> None:
        """The sink took a delivery: it is healthy again."""
        self.failures = 0
        if self.state is State.BACKING_OFF:
            self.state = State.RUNNING

    def close(self) -> None:
        self.state = State.CLOSED

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED
