"""The only module that imports posthog: swapping vendors means replacing this file.

The SDK keeps events in memory, drops a batch after its retries and reports that only through
`on_error`, and has no success callback. So the sink hands it batches and flushes: when the
flush returns inside its budget, every event not reported to `on_error` was accepted; when it
runs out of budget, the outcome is unknown and the caller keeps the events for another attempt
(the vendor drops the duplicate by uuid if the first one did land).

Several SDK clients ("lanes", one consumer thread each) send in parallel, each posting exact
batches of `batch_size`: one client with several threads would split batches between them.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import cycle

import posthog

from analytics_pipeline.tracking.message import Message

# The tracker batches and retries durably itself; SDK-side retries would only hold the
# batch in memory longer and make a flush's outcome harder to tell.
SDK_MAX_RETRIES = 0
# Requests in flight at once: a delivery of up to LANES batches takes about one round trip.
LANES = 4
# The SDK drops a bigger event without telling anyone (no on_error); we refuse it first. The
# margin covers the properties the SDK adds.
MAX_EVENT_BYTES = 900 * 1024 - 8 * 1024
# HTTP answers that a retry will not change: the batch itself is wrong. (401/403 are a wrong
# key: fixable by configuration, so those batches are kept for retry.)
_PERMANENT = {400, 413, 422}


@dataclass
class Delivery:
    """What happened to one delivery: accepted uuids, events to retry (`failed`: PostHog
    unreachable, erroring or too slow) and events to never retry (`rejected`: refused for what
    they are), with the reason."""

    accepted: list[str] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)
    rejected: list[Message] = field(default_factory=list)
    error: str = ""


class PostHogSink:
    """Delivers Messages through the PostHog SDK's batch endpoint.

    host: ingestion host (the tracker passes its own default, the EU cloud, never the SDK's).
    request_timeout: seconds one HTTP request may take.
    batch_size: events per request.
    """

    def __init__(self, *, api_key: str, host: str, request_timeout: float, batch_size: int):
        self._failed: dict[str, tuple[str, bool]] = {}
        self._lock = threading.Lock()
        self.batch_size = batch_size
        self._clients = [
            posthog.Client(
                api_key,
                host=host,
                flush_at=batch_size,
                flush_interval=10.0,
                max_retries=SDK_MAX_RETRIES,
                timeout=request_timeout,
                gzip=True,
                on_error=self._on_error,
                enable_exception_autocapture=False,
                # The SDK would otherwise add the machine's GeoIP to every event.
                disable_geoip=True,
            )
            for _ in range(LANES)
        ]
        # Flushing waits on each client; the waits run side by side.
        self._pool = ThreadPoolExecutor(max_workers=LANES, thread_name_prefix="posthog-flush")

    @property
    def host(self) -> str:
        return self._clients[0].host

    def _on_error(self, exc: Exception, batch: list[dict]) -> None:
        permanent = getattr(exc, "status", None) in _PERMANENT
        with self._lock:
            for item in batch:
                self._failed[str(item.get("uuid"))] = (f"{type(exc).__name__}: {exc}", permanent)

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        """Send `batch` and wait up to `budget_seconds` to learn its outcome."""
        result = Delivery()
        with self._lock:
            self._failed.clear()
        admitted: list[Message] = []
        chunks = [batch[i : i + self.batch_size] for i in range(0, len(batch), self.batch_size)]
        for client, chunk in zip(cycle(self._clients), chunks):
            for m in chunk:
                size = len(m.to_json())
                if size > MAX_EVENT_BYTES:
                    result.rejected.append(m)
                    result.error = f"event of {size} bytes is over PostHog's 900 KiB limit"
                elif self._submit(client, m) is None:
                    # Refused by the SDK (e.g. a $set with nothing to set): never sendable.
                    result.rejected.append(m)
                    result.error = "the SDK refused the event"
                else:
                    admitted.append(m)
        started = time.monotonic()
        flushes = [
            self._pool.submit(c.flush, timeout_seconds=budget_seconds)
            for c in self._clients[: len(chunks)]
        ]
        for f in flushes:
            f.result()
        timed_out = time.monotonic() - started >= budget_seconds
        with self._lock:
            failed = dict(self._failed)
        for m in admitted:
            if m.uuid in failed:
                result.error, permanent = failed[m.uuid]
                (result.rejected if permanent else result.failed).append(m)
            elif timed_out:
                result.failed.append(m)
                result.error = f"no answer within {budget_seconds:.1f}s"
            else:
                result.accepted.append(m.uuid)
        return result

    @staticmethod
    def _submit(client: posthog.Client, m: Message) -> str | None:
        if m.kind == "set":
            return client.set(
                distinct_id=m.distinct_id, properties=m.properties, timestamp=m.sent_at, uuid=m.uuid
            )
        return client.capture(
            m.event,
            distinct_id=m.distinct_id,
            properties=m.properties,
            timestamp=m.sent_at,
            uuid=m.uuid,
            groups=m.groups,
        )

    def close(self, budget_seconds: float) -> None:
        """Stop the SDK's threads without waiting on the network for more than the budget.

        The SDK's own shutdown waits for its queue with no time limit, so it runs in daemon
        threads that the process does not wait for.
        """
        threads = [
            threading.Thread(target=c.shutdown, name="posthog-close", daemon=True)
            for c in self._clients
        ]
        for t in threads:
            t.start()
        deadline = time.monotonic() + budget_seconds
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False)
