"""OutboxKeeper: what the delivery worker does with events it cannot hand over now.

Stores them in the outbox for a later attempt, sets aside those the vendor refused for what
they are, and keeps the counters and log lines an operator reads. No queue, no lock: the
worker (tracking/delivery.py) decides when; this module knows how, and says when it failed.
"""

from __future__ import annotations

import logging

from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline.tracking.sink import Delivery
from analytics_pipeline.tracking.stats import TrackerStats

log = logging.getLogger("analytics_pipeline.tracking")


class OutboxKeeper:
    """The outbox of one tracker, with its counters."""

    def __init__(self, config: TrackingConfig, stats: TrackerStats, vendor: str) -> None:
        self.vendor = vendor
        self.config = config
        self.stats = stats
        self.outbox = Outbox(
            config.outbox_path,
            retry_base_seconds=config.retry_base_seconds,
            retry_max_seconds=config.retry_max_seconds,
        )

    def store(self, messages: list[Message], reason: str) -> None:
        """Write to the outbox. On failure (disk full, locked) it raises; callers take the
        events off the queue only once it has returned."""
        if messages:
            self.outbox.put(messages, reason)
            self.stats.stored += len(messages)

    def reject(self, result: Delivery) -> None:
        """Keep the refused events for an operator, out of the retry loop (never raises)."""
        self.stats.rejected += len(result.rejected)
        log.error(
            "%s refused %d event(s) for what they are (%s); kept as rejected in %s",
            self.vendor,
            len(result.rejected),
            result.reason,
            self.config.outbox_path,
        )
        try:
            self.outbox.reject(result.rejected, result.reason)
        except Exception:
            self.stats.lost += len(result.rejected)
            log.exception("rejected events could not be kept in %s", self.config.outbox_path)

    def keep_for_retry(self, result: Delivery, *, from_outbox: bool, backoff: float) -> bool:
        """Store (if new) and reschedule the events to retry; False if the outbox could not be
        written, the events then being the caller's to keep (never raises)."""
        log.warning(
            "%s did not take %d event(s) (%s); kept in the outbox, next try in %.1fs",
            self.vendor,
            len(result.retry),
            result.reason,
            backoff,
        )
        try:
            if not from_outbox:
                self.store(result.retry, result.reason)
            self.outbox.failed([m.uuid for m in result.retry], result.reason)
            return True
        except Exception:
            log.exception("cannot write the event outbox %s", self.config.outbox_path)
            return False

    def delivered(self, uuids: list[str], *, from_outbox: bool) -> None:
        """Count `uuids` delivered (and redelivered, when they came from the outbox)."""
        self.stats.delivered += len(uuids)
        if from_outbox:
            self.stats.redelivered += len(uuids)

    def forget_delivered(self, uuids: list[str]) -> None:
        """Delete the rows of events the vendor has now accepted."""
        self.outbox.delivered(uuids)

    def lost(self, n: int) -> None:
        """`n` events dropped: the vendor not taking them and the outbox not writable."""
        self.stats.lost += n
        log.exception(
            "%d event(s) lost: %s is not taking them and the outbox %s cannot be written",
            n,
            self.vendor,
            self.config.outbox_path,
        )
