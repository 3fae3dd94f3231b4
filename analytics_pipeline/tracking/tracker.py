"""EventTracker: the vendor-neutral facade callers use (track, identify, flush, shutdown).

The caller's thread only validates, redacts, logs and appends to an in-memory queue; one
background thread does all network and disk work:

    track() -> queue -> [worker] -> sink (PostHog) --failure/unknown--> outbox (SQLite)
                                        ^                                  |
                                        +------ redelivery, backoff -------+

A batch leaves at `flush_at` events or `flush_interval` seconds after its oldest event. While
PostHog fails, new batches go straight to the outbox and the outbox is retried with backoff, so
memory stays bounded and nothing waits on a dead host. flush() and shutdown() are bounded: what
is not delivered in time is written to the outbox, never dropped.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from analytics_pipeline.errors import EventContractError
from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.events import EVENTS, PROPERTIES, PiiClass
from analytics_pipeline.tracking.message import Kind, Message
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline.tracking.posthog_sink import Delivery
from analytics_pipeline.tracking.sender_process import STARTUP_TIMEOUT_SECONDS, ProcessSink

log = logging.getLogger("analytics_pipeline.tracking")

# Property names are declared once for all events, so their PII class is global.
_DECLARED_PII: dict[str, PiiClass | None] = {n: p.pii for n, p in PROPERTIES.items() if p.pii}
# Set on an event that broke its contract in production: it is sent (not lost) and findable.
VIOLATION_PROPERTY = "contract_violation"
# Spill to the outbox in chunks this big while PostHog is down (one fsync per chunk).
_SPILL_CHUNK = 1000


_TRACKERS: weakref.WeakSet[EventTracker] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tracker in list(_TRACKERS):
        tracker._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


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


class Sink(Protocol):
    """What the tracker needs from a vendor adapter (ProcessSink around PostHogSink)."""

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery: ...

    def close(self, budget_seconds: float) -> None: ...


class EventTracker:
    """Fire-and-forget product and pipeline events, with a typed taxonomy and PII redaction.

    Only `track` and `identify` are called on hot paths; neither raises (except a contract
    violation outside production, which is a bug to fix at the call site) nor blocks on I/O.
    """

    def __init__(
        self,
        config: TrackingConfig | None = None,
        *,
        sink_factory: Callable[[TrackingConfig], Sink] | None = None,
    ) -> None:
        self.config = config or TrackingConfig.from_env()
        self.stats = TrackerStats()
        _TRACKERS.add(self)
        self._queue: deque[Message] = deque()
        self._cv = threading.Condition()
        self._wake = threading.Event()
        self._flush_requested = False
        self._stopping = False
        self._closed = False
        self._inflight: list[Message] = []
        self._inflight_stored = False
        self._down_until = 0.0
        self._failures = 0
        self._outbox: Outbox | None = None
        self._outbox_next: float | None = None
        self._sink: Sink | None = None
        self._worker: threading.Thread | None = None
        if self.config.sends:
            self._outbox = Outbox(
                self.config.outbox_path,
                retry_base_seconds=self.config.retry_base_seconds,
                retry_max_seconds=self.config.retry_max_seconds,
            )
            self._outbox_next = self._outbox.next_due()
            self._sink = (sink_factory or _posthog_sink)(self.config)
            self._worker = threading.Thread(target=self._run, name="event-tracker", daemon=True)
            self._worker.start()
            atexit.register(self.shutdown)

    @property
    def sends(self) -> bool:
        return self._sink is not None

    # ----------------------------------------------------------------- caller side

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
            if not distinct_id and distinct_id != 0:
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
            if not distinct_id and distinct_id != 0:
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
        if not distinct_id and distinct_id != 0:
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
        if self._sink is None:
            return message.uuid
        queue = self._queue
        queue.append(message)
        if self._closed:
            # Shut down meanwhile: no worker will take it; keep it for the next process.
            self._store_pending("tracked after shutdown")
        elif len(queue) >= self.config.flush_at and not self._wake.is_set():
            self._wake.set()
        return message.uuid

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything queued now to PostHog, waiting at most `timeout` (default:
        shutdown_timeout) once the sender is running. Never raises.

        Returns True when the worker got through the queue in time: each event was delivered,
        or (PostHog failing) stored in the outbox. False when time ran out (the rest is then
        stored by this call) or the outbox could not be written (the rest stays queued).

        A sender process still starting (slow on a busy machine) is waited for first, up to
        its start-up limit: its start-up is not PostHog's delivery time. shutdown() does not
        wait so; its bound holds.
        """
        return self._flush(timeout, wait_for_sender=True)

    def _flush(self, timeout: float | None, *, wait_for_sender: bool) -> bool:
        if self._sink is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        try:
            with self._cv:
                self._flush_requested = True
                self._wake.set()
            # Optional for a Sink: only a sink with a process to start has a start-up to wait.
            wait_started = getattr(self._sink, "wait_started", None)
            pending = self._queue or self._inflight
            if wait_for_sender and wait_started is not None and pending and not self._down():
                wait_started(STARTUP_TIMEOUT_SECONDS)
            with self._cv:
                done = self._cv.wait_for(lambda: not self._queue and not self._inflight, budget)
                self._flush_requested = False
            if not done:
                self._store_pending(f"not delivered within the {budget:.1f}s flush budget")
            return done
        except Exception:
            self.stats.errors += 1
            log.exception("event flush failed; undelivered events stay queued in memory")
            return False

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within the budget (default: shutdown_timeout), store the rest, stop.

        Bounded: a slow or dead PostHog cannot hold a process exit longer than the budget
        (plus, at worst, about 1 s waiting on another process's outbox lock). Safe to call
        more than once; registered with atexit. Never raises.
        """
        if self._closed or self._sink is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        done = self._flush(budget, wait_for_sender=False)
        self._closed = True
        self._stopping = True
        self._wake.set()
        try:
            if self._worker is not None:
                self._worker.join(max(0.0, deadline - time.monotonic()))
            # Anything tracked between the flush and `_closed`, or still in flight.
            self._store_pending("process stopping")
            self._sink.close(max(0.0, deadline - time.monotonic()))
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
        """How many events wait in the outbox (all processes sharing the file)."""
        try:
            return self._outbox.count() if self._outbox is not None else 0
        except Exception:
            log.exception("cannot read the event outbox")
            return -1

    def _after_fork(self) -> None:
        """In a forked child: the parent's queue and threads are the parent's; log only."""
        self._sink = None
        self._queue = deque()
        self._closed = True

    # ----------------------------------------------------------------- worker side

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:
                # The worker must survive anything (a full disk, a vendor SDK bug): events stay
                # queued and the next step tries again.
                self.stats.errors += 1
                log.exception("event tracker worker error")
                time.sleep(1.0)

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _step(self) -> None:
        cfg = self.config
        queue = self._queue
        worked = False
        if len(queue) > cfg.max_buffered:
            # PostHog slower than the callers: keep memory bounded, oldest first.
            worked = True
            try:
                self._spill(len(queue) - cfg.max_buffered, "buffer full")
            except Exception:
                # The outbox cannot be written either (disk full?): the only bound left.
                excess = len(queue) - cfg.max_buffered
                _drop(queue, excess)
                self.stats.lost += excess
                log.exception(
                    "%d event(s) lost: PostHog is not taking them and the outbox %s cannot be "
                    "written",
                    excess,
                    cfg.outbox_path,
                )
        if queue and (
            len(queue) >= cfg.flush_at
            or self._flush_requested
            or time.time() >= queue[0].timestamp + cfg.flush_interval
        ):
            worked = True
            if self._down():
                self._spill(_SPILL_CHUNK, "PostHog unavailable, retry pending")
            else:
                cap = cfg.flush_at * cfg.batches_per_send
                if self._flush_requested or time.time() >= queue[0].timestamp + cfg.flush_interval:
                    n = min(len(queue), cap)
                else:  # a size trigger sends full batches only; the rest waits its interval
                    n = min(len(queue) // cfg.flush_at * cfg.flush_at, cap)
                with self._cv:
                    self._inflight = _take(queue, n)
                self._send(self._inflight, from_outbox=False)
        # One outbox delivery per step, so a steady stream of new events cannot starve it.
        if not self._down() and self._outbox_next is not None and self._outbox_next <= time.time():
            worked = True
            assert self._outbox is not None
            claimed = self._outbox.claim(cfg.flush_at * cfg.batches_per_send)
            if claimed:
                self._send(claimed, from_outbox=True)
            self._outbox_next = self._outbox.next_due()
        with self._cv:
            self._cv.notify_all()
        if worked:
            return
        now = time.time()
        waits = [1.0]
        if queue:
            waits.append(queue[0].timestamp + cfg.flush_interval - now)
        if self._down():
            waits.append(self._down_until - time.monotonic())
        elif self._outbox_next is not None:
            waits.append(self._outbox_next - now)
        self._wake.wait(max(0.0, min(waits)))
        self._wake.clear()

    def _send(self, batch: list[Message], *, from_outbox: bool) -> None:
        assert self._sink is not None and self._outbox is not None
        try:
            # Under the shutdown budget, so a step-end flush can see a slow request through.
            budget = min(self.config.request_timeout + 1.0, self.config.shutdown_timeout)
            result = self._sink.deliver(batch, budget)
        except Exception as exc:
            result = Delivery(failed=batch, error=f"{type(exc).__name__}: {exc}")
        if result.accepted:
            self.stats.delivered += len(result.accepted)
            if from_outbox:
                self.stats.redelivered += len(result.accepted)
        if result.rejected:
            # Not PostHog's health: no backoff. Kept for an operator, out of the retry loop.
            self.stats.rejected += len(result.rejected)
            log.error(
                "PostHog refused %d event(s) for what they are (%s); kept as rejected in %s",
                len(result.rejected),
                result.error,
                self.config.outbox_path,
            )
            try:
                self._outbox.reject(result.rejected, result.error)
            except Exception:
                self.stats.lost += len(result.rejected)
                log.exception("rejected events could not be kept in %s", self.config.outbox_path)
        if result.failed:
            self._failures += 1
            backoff = min(
                self.config.retry_max_seconds,
                self.config.retry_base_seconds * 2 ** min(self._failures - 1, 20),
            )
            self._down_until = time.monotonic() + backoff
            log.warning(
                "PostHog did not take %d event(s) (%s); kept in the outbox, next try in %.1fs",
                len(result.failed),
                result.error,
                backoff,
            )
            try:
                if not from_outbox:
                    self._store(result.failed, result.error)
                self._outbox.failed([m.uuid for m in result.failed], result.error)
                self._outbox_next = self._outbox.next_due()
            except Exception:
                # The outbox cannot be written: back to the front of the queue, to be stored
                # (or sent) on a later step; never dropped here.
                log.exception("cannot write the event outbox %s", self.config.outbox_path)
                if not from_outbox:
                    with self._cv:
                        self._queue.extendleft(reversed(result.failed))
        elif not result.rejected or result.accepted:
            self._failures = 0
            self._down_until = 0.0
        with self._cv:
            # Under the lock, after any _store_pending that copied this batch has committed.
            stored = self._inflight_stored
            self._inflight = []
            self._inflight_stored = False
        if result.accepted and (from_outbox or stored):
            self._outbox.delivered(result.accepted)

    def _spill(self, n: int, reason: str) -> None:
        """Move the n oldest queued events to the outbox; they leave the queue only once
        written."""
        with self._cv:
            batch = list(itertools.islice(self._queue, n))
            self._store(batch, reason)
            _drop(self._queue, len(batch))

    def _store_pending(self, reason: str) -> None:
        """Persist whatever is queued or in flight (called when time is up).

        Holds the lock while writing, so the worker, finishing the batch in flight, sees the
        rows committed before it deletes those PostHog accepted.
        """
        with self._cv:
            pending = list(self._queue)
            inflight = list(self._inflight)
            self._store([*inflight, *pending], reason)
            _drop(self._queue, len(pending))
            if inflight:
                self._inflight_stored = True

    def _store(self, messages: list[Message], reason: str) -> None:
        """Write to the outbox. On failure (disk full, locked) it raises; callers take the
        events off the queue only once it has returned."""
        if not messages or self._outbox is None:
            return
        self._outbox.put(messages, reason)
        self.stats.stored += len(messages)
        self._outbox_next = self._outbox.next_due()


def _take(queue: deque[Message], n: int) -> list[Message]:
    batch: list[Message] = []
    while queue and len(batch) < n:
        try:
            batch.append(queue.popleft())
        except IndexError:  # another thread emptied it
            break
    return batch


def _drop(queue: deque[Message], n: int) -> None:
    for _ in range(n):
        queue.popleft()


def _posthog_sink(config: TrackingConfig) -> Sink:
    return ProcessSink(config)
