"""The vendor-neutral edge of tracking: what the delivery worker needs from a vendor adapter.

A `Sink` takes a batch of already validated and redacted `Message`s and says, per event, what
the vendor answered (`Delivery`). The worker decides what each outcome means for the queue, the
outbox and the backoff; a sink never retries, stores or waits beyond the budget it is given.
Swapping vendors is writing another `Sink` and wiring it in (tracking/tracker.py).

Imported by the sender child process too, so it imports nothing but the message format.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from analytics_pipeline.tracking.message import Message

if TYPE_CHECKING:
    from analytics_pipeline.tracking.config import TrackingConfig


class Outcome(enum.Enum):
    """What the vendor's answer means for one event."""

    # Taken: the event is the vendor's now.
    ACCEPTED = "accepted"
    # Not taken for a reason a later attempt can change (unreachable, 5xx, rate limited, no
    # answer within the budget, a wrong key): kept and sent again, same uuid.
    RETRY = "retry"
    # Refused for what it is (malformed, too big): retrying cannot help; kept aside.
    REJECTED = "rejected"


@dataclass(frozen=True)
class Delivery:
    """The outcome of one delivery: accepted uuids, events to retry, events never to retry,
    and the vendor's reason for the last event not accepted ("" when all were)."""

    accepted: list[str] = field(default_factory=list)
    retry: list[Message] = field(default_factory=list)
    rejected: list[Message] = field(default_factory=list)
    reason: str = ""

    @classmethod
    def of(
        cls, batch: Sequence[Message], outcomes: Mapping[str, Outcome], reason: str = ""
    ) -> Delivery:
        """Sort `batch` by `outcomes` (uuid -> outcome); an event without one is retried, so
        no event can be counted delivered without the vendor having said so."""
        accepted: list[str] = []
        retry: list[Message] = []
        rejected: list[Message] = []
        for m in batch:
            outcome = outcomes.get(m.uuid, Outcome.RETRY)
            if outcome is Outcome.ACCEPTED:
                accepted.append(m.uuid)
            elif outcome is Outcome.REJECTED:
                rejected.append(m)
            else:
                retry.append(m)
        return cls(accepted, retry, rejected, reason)

    @classmethod
    def retry_all(cls, batch: Sequence[Message], reason: str) -> Delivery:
        """The whole batch to try again (the vendor could not be asked, or did not answer)."""
        return cls(retry=list(batch), reason=reason)


class Sink(Protocol):
    """A vendor adapter, as the delivery worker uses it (one call at a time, from its thread)."""

    # Who the events go to, as log lines and the outbox's reasons name it (e.g. "PostHog").
    name: str

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        """Send `batch`, returning within about `budget_seconds` with each event's outcome
        (events whose answer did not come in time are `retry`). Should not raise; if it does,
        the worker retries the whole batch."""
        ...

    def wait_ready(self) -> None:
        """Return once the sink can take a delivery at once, or has given up getting ready
        (within its own start-up limit). A sink with nothing to start returns at once; a flush
        calls it so that a start-up is not counted against the flush's delivery budget."""
        ...

    def close(self, budget_seconds: float) -> None:
        """Release the sink's resources within `budget_seconds`; undelivered events are the
        worker's to keep (it stored them before calling this)."""
        ...


# Built once per tracker, from its configuration, when the tracker starts sending.
SinkFactory = Callable[["TrackingConfig"], Sink]
