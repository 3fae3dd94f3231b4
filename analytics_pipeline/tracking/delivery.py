"""DeliveryWorker: one queue, one lock, one thread between the facade and a `Sink`.

    put() -> queue -> [worker thread] -> sink --retry--> outbox (SQLite)
                                           ^                 |
                                           +-- redelivery ---+  (backoff while the sink fails)

A batch leaves at `flush_at` events or `flush_interval` seconds after its oldest event. While
the sink fails (state BACKING_OFF), new batches go straight to the outbox and the outbox is
retried with backoff, so memory stays bounded and nothing waits on a dead host. flush() and
stop() are bounded: what is not delivered in time is written to the outbox, never dropped.

Every piece of shared state (the queue, the batch in flight, the state, flush requests) is read
and written under `_cv`'s lock, and the thread sleeps on that same condition. Only the sink and
the outbox do I/O, and never under the lock except `_store_pending` (see there). All timing is
on the monotonic clock; the outbox's own schedule is wall-clock because other processes share it.

One module, slightly over 300 lines, on purpose: the queue, the batch in flight and the state
machine share one lock and one condition, and their invariants (what may change under the lock,
when the thread sleeps) read only when they are read together; the states themselves, the
outbox keeper and the sinks live in their own modules.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from typing import NamedTuple

from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.keeper import OutboxKeeper
from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.sink import Delivery, Sink
from analytics_pipeline.tracking.states import Lifecycle, State
from analytics_pipeline.tracking.stats import TrackerStats

log = logging.getLogger("analytics_pipeline.tracking")

# Spill to the outbox in chunks this big while the sink is down (one fsync per chunk).
SPILL_CHUNK = 1000
# How long the thread sleeps at most with nothing due (it is woken for anything sooner).
IDLE_SECONDS = 1.0


class _Queued(NamedTuple):
    at: float  # monotonic time it was queued: the flush interval counts from the oldest
    message: Message


class DeliveryWorker:
    """Takes Messages from the facade and sees each delivered, stored or rejected."""

    def __init__(self, config: TrackingConfig, sink: Sink, stats: TrackerStats) -> None:
        self.config = config
        self.stats = stats
        self._sink = sink
        self._keeper = OutboxKeeper(config, stats, sink.name)
        # A plain Lock (not the default RLock): cheaper on the callers' path; nothing re-enters.
        self._cv = threading.Condition(threading.Lock())
        self._queue: deque[_Queued] = deque()
        self._inflight: list[_Queued] = []
        # Set when a flush or stop copied the batch in flight to the outbox meanwhile.
        self._inflight_stored = False
        self._flushes = 0
        self._life = Lifecycle(config.retry_base_seconds, config.retry_max_seconds)
        self._outbox_due: float | None = None
        self._refresh_outbox_due()
        self._thread = threading.Thread(target=self._run, name="event-tracker", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- facade side

    @property
    def queued(self) -> int:
        """Events held in memory waiting for a batch (the batch in flight not counted)."""
        with self._cv:
            return len(self._queue)

    @property
    def state(self) -> State:
        with self._cv:
            return self._life.state

    def put(self, message: Message) -> None:
        """Queue `message` (no I/O, except after stop(): then it goes to the outbox)."""
        queued = _Queued(time.monotonic(), message)
        with self._cv:
            self._queue.append(queued)
            closed = self._life.closed
            n = len(self._queue)
            # The worker checks for work under this lock before it sleeps, so these crossings
            # are the only moments it can be asleep with a batch due by size.
            if n == self.config.flush_at or n == self.config.max_buffered + 1:
                self._cv.notify_all()
        if closed:
            # No worker will take it; keep it for the next process.
            self._store_pending("tracked after shutdown")

    def flush(self, budget: float, *, wait_for_sender: bool) -> bool:
        """Wait up to `budget` for the queue and the batch in flight to be gone (delivered or
        stored); store what is left then. True if the worker got through it in time."""
        with self._cv:
            self._flushes += 1
            pending = bool(self._queue or self._inflight)
            backing_off = self._life.backing_off(time.monotonic())
            self._cv.notify_all()
        try:
            if wait_for_sender and pending and not backing_off:
                self._sink.wait_ready()
            with self._cv:
                done = self._cv.wait_for(lambda: not self._queue and not self._inflight, budget)
        finally:
            with self._cv:
                self._flushes -= 1
        if not done:
            self._store_pending(f"not delivered within the {budget:.1f}s flush budget")
        return done

    def stop(self, deadline: float) -> None:
        """Close, let the batch in flight finish until `deadline` (monotonic), store the rest."""
        with self._cv:
            self._life.close()
            self._cv.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        # Anything put between the caller's flush and CLOSED, or still in flight.
        self._store_pending("process stopping")
        self._sink.close(max(0.0, deadline - time.monotonic()))

    def pending_in_outbox(self) -> int:
        return self._keeper.outbox.count()

    # ------------------------------------------------------------- worker thread

    def _run(self) -> None:
        while self.state is not State.CLOSED:
            try:
                self._step()
            except Exception:
                # The worker must survive anything (a full disk, a vendor SDK bug): events stay
                # queued and the next step tries again.
                self.stats.errors += 1
                log.exception("event tracker worker error")
                with self._cv:
                    self._cv.wait(IDLE_SECONDS)

    def _batch_due(self, now: float) -> bool:
        """Under the lock: whether a batch should leave now."""
        queue = self._queue
        return bool(queue) and (
            len(queue) >= self.config.flush_at
            or self._flushes > 0
            or now >= queue[0].at + self.config.flush_interval
        )

    def _step(self) -> None:
        cfg = self.config
        cap = cfg.flush_at * cfg.batches_per_send
        worked = False
        batch: list[Message] = []
        with self._cv:
            excess = len(self._queue) - cfg.max_buffered
        if excess > 0:
            # The sink slower than the callers: keep memory bounded, oldest first.
            worked = True
            self._spill_or_drop(excess)
        with self._cv:
            now = time.monotonic()
            due = self._batch_due(now)
            backing_off = self._life.backing_off(now)
            # Closed: the batch in flight finishes, but nothing new is taken; stop() stores it.
            take = due and not backing_off and not self._life.closed
            if take:
                if self._flushes or now >= self._queue[0].at + cfg.flush_interval:
                    n = min(len(self._queue), cap)
                else:  # a size trigger sends full batches only; the rest waits its interval
                    n = min(len(self._queue) // cfg.flush_at * cfg.flush_at, cap)
                self._inflight = [self._queue.popleft() for _ in range(n)]
                batch = [q.message for q in self._inflight]
        if take:
            worked = True
            self._send(batch, from_outbox=False)
        elif due and backing_off:
            worked = True
            self._spill(SPILL_CHUNK, f"{self._sink.name} unavailable, retry pending")
        # One outbox delivery per step, so a steady stream of new events cannot starve it.
        with self._cv:
            now = time.monotonic()
            outbox_due = not self._life.backing_off(now) and (
                self._outbox_due is not None and self._outbox_due <= now
            )
        if outbox_due:
            worked = True
            claimed = self._keeper.outbox.claim(cap)
            if claimed:
                self._send(claimed, from_outbox=True)
            self._refresh_outbox_due()
        with self._cv:
            self._cv.notify_all()  # flushes waiting for the queue to empty
            if not worked and not self._life.closed:
                self._cv.wait(self._idle_seconds(time.monotonic()))

    def _idle_seconds(self, now: float) -> float:
        """Under the lock: how long nothing is due (0 if something is)."""
        if self._batch_due(now) or len(self._queue) > self.config.max_buffered:
            return 0.0
        waits = [IDLE_SECONDS]
        if self._queue:
            waits.append(self._queue[0].at + self.config.flush_interval - now)
        if self._life.backing_off(now):
            waits.append(self._life.retry_at - now)
        elif self._outbox_due is not None:
            waits.append(self._outbox_due - now)
        return max(0.0, min(waits))

    def _send(self, batch: list[Message], *, from_outbox: bool) -> None:
        cfg = self.config
        try:
            # Under the shutdown budget, so a step-end flush can see a slow request through.
            result = self._sink.deliver(batch, min(cfg.request_timeout + 1.0, cfg.shutdown_timeout))
        except Exception as exc:
            result = Delivery.retry_all(batch, f"{type(exc).__name__}: {exc}")
        self._keeper.delivered(result.accepted, from_outbox=from_outbox)
        if result.rejected:
            # Not the sink's health: no backoff.
            self._keeper.reject(result)
        if result.retry:
            self._back_off(result, from_outbox=from_outbox)
        elif result.accepted or not result.rejected:
            with self._cv:
                self._life.succeeded()
        stored = False
        if not from_outbox:
            with self._cv:
                # Under the lock, after any _store_pending that copied this batch has committed.
                stored = self._inflight_stored
                self._inflight = []
                self._inflight_stored = False
        if result.accepted and (from_outbox or stored):
            self._keeper.forget_delivered(result.accepted)

    def _back_off(self, result: Delivery, *, from_outbox: bool) -> None:
        with self._cv:
            backoff = self._life.failed(time.monotonic())
        if self._keeper.keep_for_retry(result, from_outbox=from_outbox, backoff=backoff):
            self._refresh_outbox_due()
        elif not from_outbox:
            # The outbox cannot be written: back to the front of the queue, to be stored (or
            # sent) on a later step; never dropped here.
            retry = {m.uuid for m in result.retry}
            with self._cv:
                self._queue.extendleft(
                    reversed([q for q in self._inflight if q.message.uuid in retry])
                )

    # ------------------------------------------------------------- outbox

    def _spill_or_drop(self, excess: int) -> None:
        try:
            self._spill(excess, "buffer full")
        except Exception:
            # The outbox cannot be written either (disk full?): the only bound left.
            with self._cv:
                excess = max(0, len(self._queue) - self.config.max_buffered)
                for _ in range(excess):
                    self._queue.popleft()
            self._keeper.lost(excess)

    def _spill(self, n: int, reason: str) -> None:
        """Move the n oldest queued events to the outbox; they leave the queue only once
        written. Written outside the lock, so callers keep queueing meanwhile."""
        with self._cv:
            entries = list(itertools.islice(self._queue, n))
        self._store([q.message for q in entries], reason)
        with self._cv:
            # Still at the front unless a _store_pending took the whole queue meanwhile (it
            # stored them too); only this thread takes from the front otherwise.
            for q in entries:
                if not self._queue or self._queue[0] is not q:
                    break
                self._queue.popleft()

    def _store_pending(self, reason: str) -> None:
        """Persist whatever is queued or in flight (called when time is up).

        Holds the lock while writing, so the worker, finishing the batch in flight, sees the
        rows committed before it deletes those the sink accepted. Rare (a flush out of time,
        a stop), so callers waiting on the lock meanwhile is the lesser cost.
        """
        with self._cv:
            pending = [q.message for q in self._queue]
            inflight = [q.message for q in self._inflight]
            self._keeper.store([*inflight, *pending], reason)
            self._queue.clear()
            if inflight:
                self._inflight_stored = True
        self._refresh_outbox_due()

    def _store(self, messages: list[Message], reason: str) -> None:
        """Write to the outbox (raises if it cannot: see OutboxKeeper.store)."""
        if messages:
            self._keeper.store(messages, reason)
            self._refresh_outbox_due()

    def _refresh_outbox_due(self) -> None:
        due_in = self._keeper.outbox.due_in()
        with self._cv:
            self._outbox_due = None if due_in is None else time.monotonic() + due_in
