"""The only module that imports posthog: swapping vendors means replacing this file.

The SDK keeps events in memory, drops a batch after its retries and reports that only through
`on_error`, and has no success callback. So the sink hands it one batch at a time and flushes:
when the flush returns inside its budget, every event of the batch not reported to `on_error`
was accepted; when it runs out of budget, the outcome is unknown and the caller keeps the batch
for another attempt (the vendor drops the duplicate by uuid if the first one did land).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import posthog

from analytics_pipeline.tracking.message import Message

# The tracker batches and retries durably itself; SDK-side retries would only hold the
# batch in memory longer and make a flush's outcome harder to tell.
SDK_MAX_RETRIES = 0


@dataclass
class Delivery:
    """What happened to one batch: accepted uuids, and the rest with the reason."""

    accepted: list[str] = field(default_factory=list)
    failed: list[Message] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed


class PostHogSink:
    """Delivers batches of Messages through the PostHog SDK's batch endpoint.

    host: ingestion host (the tracker passes its own default, the EU cloud, never the SDK's).
    request_timeout: seconds one HTTP request may take.
    """

    def __init__(self, *, api_key: str, host: str, request_timeout: float, batch_size: int):
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self.request_timeout = request_timeout
        self._client = posthog.Client(
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

    @property
    def host(self) -> str:
        return self._client.host

    def _on_error(self, exc: Exception, batch: list[dict]) -> None:
        with self._lock:
            for item in batch:
                self._failed[str(item.get("uuid"))] = f"{type(exc).__name__}: {exc}"

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        """Send `batch` and wait up to `budget_seconds` to learn its outcome."""
        result = Delivery()
        with self._lock:
            self._failed.clear()
        admitted: list[Message] = []
        for m in batch:
            if m.kind == "set":
                sent = self._client.set(
                    distinct_id=m.distinct_id,
                    properties=m.properties,
                    timestamp=m.sent_at,
                    uuid=m.uuid,
                )
            else:
                sent = self._client.capture(
                    m.event,
                    distinct_id=m.distinct_id,
                    properties=m.properties,
                    timestamp=m.sent_at,
                    uuid=m.uuid,
                    groups=m.groups,
                )
            # Hand the GIL back between events: a caller of track() waiting for it would
            # otherwise wait for the whole batch (the interpreter's switch interval is 5 ms).
            time.sleep(0)
            if sent is None:
                # Not admitted (queue full, client closed): never sent, try again later.
                result.failed.append(m)
                result.error = "the SDK did not admit the event"
            else:
                admitted.append(m)
        started = time.monotonic()
        self._client.flush(timeout_seconds=budget_seconds)
        timed_out = time.monotonic() - started >= budget_seconds
        with self._lock:
            failed = dict(self._failed)
        for m in admitted:
            if m.uuid in failed:
                result.failed.append(m)
                result.error = failed[m.uuid]
            elif timed_out:
                result.failed.append(m)
                result.error = f"no answer within {budget_seconds:.1f}s"
            else:
                result.accepted.append(m.uuid)
        return result

    def close(self, budget_seconds: float) -> None:
        """Stop the SDK's threads without waiting on the network for more than the budget.

        The SDK's own shutdown waits for its queue with no time limit, so it runs in a daemon
        thread that the process does not wait for.
        """
        thread = threading.Thread(target=self._client.shutdown, name="posthog-close", daemon=True)
        thread.start()
        thread.join(budget_seconds)
