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
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from analytics_pipeline.errors import EventContractError
from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.events import EVENTS, PROPERTIES, PiiClass
from analytics_pipeline.tracking.message import Kind, Message
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline.tracking.posthog_sink import Delivery
from analytics_pipeline.tracking.sender_process import ProcessSink

log = logging.getLogger("analytics_pipeline.tracking")

# Property names are declared once for all events, so their PII class is global.
_DECLARED_PII: dict[str, PiiClass | None] = {n: p.pii for n, p in PROPERTIES.items() if p.pii}
# Set on an event that broke its contract in production: it is sent (not lost) and findable.
VIOLATION_PROPERTY = "contract_violation"
# Spill to the outbox in chunks this big while PostHog is down (one fsync per chunk).
_SPILL_CHUNK = 1000


@dataclass
class TrackerStats:
    """Counters since the tracker started (approximate under concurrent callers)."""

    tracked: int = 0
    delivered: int = 0
    stored: int = 0
    redelivered: int = 0
    contract_violations: int = 0
    errors: int = 0


class Sink:
    """What the tracker needs from a vendor adapter (PostHogSink is the real one)."""

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        raise NotImplementedError

    def close(self, budget_seconds: float) -> None:
        raise NotImplementedError


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
                problems.append(f"distinct_id is {distinct_id!r}")
            if problems:
                self._violation(event, problems, props)
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
        """Set or update person properties (PostHog's `$set`; the SDK has no identify any more)."""
        try:
            if not distinct_id and distinct_id != 0:
                self._violation("$set", [f"distinct_id is {distinct_id!r}"], {})
            if not properties:
                # PostHog ignores a $set without properties; queueing it would only make an
                # event that can never be accepted.
                log.info("identify %s without properties: nothing to set", distinct_id)
                return None
            return self._enqueue("set", "$set", distinct_id, dict(properties), None)
        except EventContractError:
            raise
        except Exception:
            self.stats.errors += 1
            log.exception("identify of %r failed; it was dropped", distinct_id)
            return None

    def _violation(self, event: str, problems: list[str], props: dict[str, object]) -> None:
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
    ) -> str:
        policy = self.config.redaction
        message = Message(
            uuid=str(uuid.uuid4()),
            kind=kind,
            event=event,
            distinct_id=policy.distinct_id(str(distinct_id)),
            properties=policy.properties(props, _DECLARED_PII),
            groups={k: str(v) for k, v in groups.items()} if groups else None,
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
        if self._closed:
            # After shutdown there is no worker: keep it for the next process to deliver.
            self._store([message], "tracked after shutdown")
            return message.uuid
        self._queue.append(message)
        if len(self._queue) >= self.config.flush_at and not self._wake.is_set():
            self._wake.set()
        return message.uuid

    def flush(self, timeout: float | None = None) -> bool:
        """Hand everything queued now to PostHog, waiting at most `timeout` (default:
        shutdown_timeout). Never raises.

        Returns True when the worker got through the queue in time: each event was delivered,
        or (PostHog failing) stored in the outbox. False when time ran out: the rest was then
        stored in the outbox by this call. Either way nothing is left only in memory.
        """
        if self._sink is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        with self._cv:
            self._flush_requested = True
            self._wake.set()
            done = self._cv.wait_for(lambda: not self._queue and not self._inflight, budget)
            self._flush_requested = False
        if not done:
            self._store_pending(f"not delivered within the {budget:.1f}s flush budget")
        return done

    def shutdown(self, timeout: float | None = None) -> bool:
        """Flush within the budget (default: shutdown_timeout), store the rest, stop.

        Bounded: a slow or dead PostHog cannot hold a process exit longer than the budget.
        Safe to call more than once; registered with atexit.
        """
        if self._closed or self._sink is None:
            return True
        budget = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        done = self.flush(budget)
        self._closed = True
        self._stopping = True
        self._wake.set()
        if self._worker is not None:
            self._worker.join(max(0.0, deadline - time.monotonic()))
        # Anything tracked between the flush and `_closed`, or still in flight.
        self._store_pending("process stopping")
        self._sink.close(max(0.0, deadline - time.monotonic()))
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
        return self._outbox.count() if self._outbox is not None else 0

    # ----------------------------------------------------------------- worker side

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._step()
            except Exception:
                # The worker must survive anything (a full disk, a vendor SDK bug): events stay
                # queued or stored and the next step tries again.
                self.stats.errors += 1
                log.exception("event tracker worker error")
                time.sleep(1.0)

    def _down(self) -> bool:
        return time.monotonic() < self._down_until

    def _step(self) -> None:
        cfg = self.config
        queue = self._queue
        worked = False
        if queue and (
            len(queue) >= cfg.flush_at
            or self._flush_requested
            or time.time() >= queue[0].timestamp + cfg.flush_interval
        ):
            worked = True
            if self._down():
                with self._cv:
                    self._store(_take(queue, _SPILL_CHUNK), "PostHog unavailable, retry pending")
            else:
                with self._cv:
                    self._inflight = _take(queue, cfg.flush_at)
                self._send(self._inflight, from_outbox=False)
        # One outbox batch per step, so a steady stream of new events cannot starve it.
        if not self._down() and self._outbox_next is not None and self._outbox_next <= time.time():
            worked = True
            assert self._outbox is not None
            claimed = self._outbox.claim(cfg.flush_at)
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
            result = self._sink.deliver(batch, self.config.request_timeout + 1.0)
        except Exception as exc:
            result = Delivery(failed=batch, error=f"{type(exc).__name__}: {exc}")
        if result.accepted:
            self.stats.delivered += len(result.accepted)
            if from_outbox:
                self.stats.redelivered += len(result.accepted)
            if from_outbox or self._inflight_stored:
                self._outbox.delivered(result.accepted)
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
            if not from_outbox:
                self._store(result.failed, result.error)
            self._outbox.failed([m.uuid for m in result.failed], result.error)
            self._outbox_next = self._outbox.next_due()
        else:
            self._failures = 0
            self._down_until = 0.0
        with self._cv:
            self._inflight = []
            self._inflight_stored = False

    def _store_pending(self, reason: str) -> None:
        """Persist whatever is queued or in flight (called when time is up)."""
        with self._cv:
            pending = _take(self._queue, len(self._queue))
            inflight = list(self._inflight)
            self._inflight_stored = bool(inflight)
        self._store([*inflight, *pending], reason)

    def _store(self, messages: list[Message], reason: str) -> None:
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


def _posthog_sink(config: TrackingConfig) -> Sink:
    return ProcessSink(config)  # type: ignore[return-value]
