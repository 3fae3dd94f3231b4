"""TrackingFacade: what callers use (track, identify, flush, shutdown), over any `Sink`.

The caller's thread only validates (against the registry, tracking/events.py), redacts
(tracking/redaction.py), logs and hands the event to the delivery worker's queue
(tracking/delivery.py), which does all network and disk work. The facade knows no vendor: the
sink is built by the factory it is given (tracking/tracker.py wires in PostHog).
"""

from __future__ import annotations

import atexit
import logging
import os
import time
import uuid
import weakref
from collections.abc import Mapping

from analytics_pipeline.errors import EventContractError
from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.delivery import DeliveryWorker
from analytics_pipeline.tracking.events import EVENTS, PROPERTIES, PiiClass
from analytics_pipeline.tracking.message import Kind, Message
from analytics_pipeline.tracking.sink import SinkFactory
from analytics_pipeline.tracking.stats import TrackerStats

log = logging.getLogger("analytics_pipeline.tracking")

# Property names are declared once for all events, so their PII class is global.
_DECLARED_PII: dict[str, PiiClass | None] = {n: p.pii for n, p in PROPERTIES.items() if p.pii}
# Set on an event that broke its contract in production: it is sent (not lost) and findable.
VIOLATION_PROPERTY = "contract_violation"


def _missing(distinct_id: object) -> bool:
    # Callers are not all typed: an integer id 0 is an id, None or "" is not.
    return not distinct_id and distinct_id != 0


_FACADES: weakref.WeakSet[TrackingFacade] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for facade in list(_FACADES):
        facade._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class TrackingFacade:
    """Fire-and-forget product and pipeline events, with a typed taxonomy and PII redaction.

    Only `track` and `identify` are called on hot paths; neither raises (except a contract
    violation outside production, which is a bug to fix at the call site) nor blocks on I/O.
    `sink_factory` builds the vendor sink, once, when the configuration sends.
    """

    def __init__(self, config: TrackingConfig | None = None, *, sink_factory: SinkFactory) -> None:
        self.config = config or TrackingConfig.from_env()
        self.stats = TrackerStats()
        _FACADES.add(self)
        self._worker: DeliveryWorker | None = None
        self._closed = False
        if self.config.sends:
            self._worker = DeliveryWorker(self.config, sink_factory(self.config), self.stats)
            atexit.register(self.shutdown)

    @property
    def sends(self) -> bool:
        """True when events go to the sink (production with a key); else they are only logged."""
        return self._worker is not None

    @property
    def queued(self) -> int:
        """Events in this process's memory waiting for a batch (0 when log-only). Read-only;
        for operators and tests: while the sink is slow it stays at most `max_buffered`."""
        worker = self._worker
        return worker.queued if worker is not None else 0

    def track(
        self,
        distinct_id: str,
        event: str,
        properties: Mapping[str, object] | None = None,
        *,
        groups: Mapping[str, str] | None = None,
    ) -> str | None:
        """Record `event` for `distinct_id`; returns the event's uuid (None if it was refused).

        `groups` attaches PostHog groups, e.g. {"tenant": tenant_id}.
        """
        try:
            props = dict(properties) if properties else {}
            spec = EVENTS.get(event)
            problems = spec.violations(props) if spec else ["unknown event"]
            if _missing(distinct_id):
                problems.append("distinct_id is empty")
            if problems:
                self._violation(event, problems, props)
                # Production only (elsewhere it raised): a value of the wrong type is of unknown
                # shape, so it is not sent; the violation says which property and type it was.
                for key in spec.mistyped(props) if spec else ():
                    del props[key]
            return self._enqueue("capture", event, distinct_id, props, groups)
        except EventContractError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("event %r could not be tracked; it was dropped", event)
            return None

    def identify(
        self, distinct_id: str, properties: Mapping[str, object] | None = None
    ) -> str | None:
        """Set or update person properties (PostHog's `$set`; the SDK has no identify any more).

        Returns None, queueing nothing, when there is no person (empty id) or nothing left to
        set after redaction: PostHog would refuse such an update, forever.
        """
        try:
            if _missing(distinct_id):
                self._violation("$set", ["distinct_id is empty"], {})
                return None
            return self._enqueue("set", "$set", distinct_id, dict(properties or {}), None)
        except EventContractError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("an identify could not be tracked; it was dropped")
            return None

    def _violation(self, event: str, problems: list[str], props: dict[str, object]) -> None:
        # `problems` name properties and types, never values: this text is logged and sent.
        self.stats.contract_violations += 1
        what = "; ".join(problems)
        if self.config.strict:
            hint = (
                f"register it in analytics_pipeline/tracking/events.py (known: "
                f"{', '.join(sorted(EVENTS))})"
                if event not in EVENTS and event != "$set"
                else "fix the call or the event's spec in analytics_pipeline/tracking/events.py"
            )
            raise EventContractError(f"event {event!r}: {what}; {hint}", event=event)
        log.error(
            "event %r breaks the event contract (%s); sent marked %r",
            event,
            what,
            VIOLATION_PROPERTY,
        )
        props[VIOLATION_PROPERTY] = what

    def _enqueue(
        self,
        kind: Kind,
        event: str,
        distinct_id: object,
        props: dict[str, object],
        groups: Mapping[str, str] | None,
    ) -> str | None:
        policy = self.config.redaction
        event_id = str(uuid.uuid4())
        properties = policy.properties(props, _DECLARED_PII)
        if kind == "set" and not properties:
            log.info("identify with nothing to set after redaction: not sent")
            return None
        if _missing(distinct_id):
            # Production only (elsewhere it raised): a stable id of its own, so a retried copy
            # is the same event, and no person profile for it.
            did = f"anonymous:{event_id}"
            properties["$process_person_profile"] = False
        else:
            did = policy.distinct_id(str(distinct_id))
        message = Message(
            uuid=event_id,
            kind=kind,
            event=event,
            distinct_id=did,
            properties=properties,
            groups=policy.groups(groups) if groups else None,
            # When it happened, for the vendor (wall clock): not used for any timing here.
            timestamp=time.time(),
        )
        self.stats.tracked += 1
        log.info(
            "event %s distinct_id=%s properties=%s groups=%s uuid=%s",
            message.event,
            message.distinct_id,
            message.properties,
            message.groups,
            message.uuid,
        )
        worker = self._worker
        if worker is not None:
            worker.put(message)
        return message.uuid

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything queued now to the sink, waiting at most `timeout` (default:
        shutdown_timeout) once the sender is running. Never raises.

        Returns True when the worker got through the queue in time: each event was delivered,
        or (the sink failing) stored in the outbox. False when time ran out (the rest is then
        stored by this call) or the outbox could not be written (the rest stays queued).

        A sink still starting (the sender process, slow on a busy machine) is waited for first,
        up to its start-up limit: its start-up is not the vendor's delivery time. shutdown()
        does not wait so; its bound holds.
        """
        return self._flush(timeout, wait_for_sender=True)

    def _flush(self, timeout: float | None, *, wait_for_sender: bool) -> bool:
        worker = self._worker
        if worker is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        try:
            return worker.flush(budget, wait_for_sender=wait_for_sender)
        except Exception:
            self.stats.errors += 1
            log.exception("event flush failed; undelivered events stay queued in memory")
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within the budget (default: shutdown_timeout), store the rest, stop.

        Bounded: a slow or dead vendor cannot hold a process exit longer than the budget
        (plus, at worst, about 1 s waiting on another process's outbox lock). Safe to call
        more than once; registered with atexit. Never raises.
        """
        worker = self._worker
        if self._closed or worker is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        done = self._flush(budget, wait_for_sender=False)
        self._closed = True
        try:
            worker.stop(deadline)
        except Exception:
            done = False
            self.stats.errors += 1
            log.exception("event tracker shutdown failed; events still queued are lost")
        atexit.unregister(self.shutdown)
        log.info(
            "event tracker stopped: %d tracked, %d delivered, %d waiting in the outbox %s",
            self.stats.tracked,
            self.stats.delivered,
            self.pending_in_outbox(),
            self.config.outbox_path,
        )
        return done

    def pending_in_outbox(self) -> int:
        """How many events wait in the outbox (all processes sharing the file); -1 if it
        cannot be read."""
        try:
            return self._worker.pending_in_outbox() if self._worker is not None else 0
        except Exception:
            log.exception("cannot read the event outbox")
            return -1

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue and threads are the parent's; log only."""
        self._worker = None
        self._closed = True
