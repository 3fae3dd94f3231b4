"""The only module that imports posthog: swapping vendors means replacing this file (and the
line in tracking/tracker.py that wires it in).

Each event's outcome is what PostHog answered for the request that carried it, read from the
HTTP status as posthog-python's own consumer does (`is_retryable` in posthog/consumer.py):
200 is accepted; 429, 5xx, a network error or no answer within the budget is retried; a refusal
of the batch itself (400/413/422) is rejected. The SDK shapes the events (`capture`/`set` with
`send=False`, its `before_send` hook handing back the finished event) and its `batch_post`
sends them; its queue, consumer threads, retries and `on_error` are not used, so nothing is
inferred from how long a flush took.

Runs in the sender child process (sender_process.py); `main` is that process's entry point.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from posthog.client import Client
from posthog.request import APIError, batch_post

from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.sender_child import serve
from analytics_pipeline.tracking.sink import Delivery, Outcome

if TYPE_CHECKING:
    from analytics_pipeline.tracking.config import TrackingConfig

# Requests in flight at once: a delivery of up to LANES batches takes about one round trip.
LANES = 4
# The SDK drops a bigger event without telling anyone; we refuse it first. The margin covers
# the properties the SDK adds.
MAX_EVENT_BYTES = 900 * 1024 - 8 * 1024
# Answers that a retry will not change: the batch itself is wrong. posthog-python treats every
# other 4xx but 408/429 as permanent too; here 401/403/404 are kept for retry, because they mean
# a wrong key or host, which an operator fixes, after which the kept events go out.
PERMANENT_STATUSES = frozenset({400, 413, 422})
# Not `-m`: with -m, runpy would import the module a second time as __main__.
SENDER_COMMAND = [
    sys.executable,
    "-c",
    "from analytics_pipeline.tracking.posthog_sink import main; main()",
]


def outcome_of(exc: BaseException) -> Outcome:
    """What a failed `batch_post` means for its events: rejected for a permanent HTTP status,
    else retried (other statuses, and network errors: refused, reset, timed out)."""
    status = exc.status if isinstance(exc, APIError) else None
    return Outcome.REJECTED if status in PERMANENT_STATUSES else Outcome.RETRY


def sender_settings(config: TrackingConfig) -> dict[str, object]:
    """The settings the sender child builds its PostHogSink from (PostHogSink's arguments)."""
    return {
        "api_key": config.api_key,
        "host": config.host,
        "request_timeout": config.request_timeout,
        "batch_size": config.flush_at,
    }


class PostHogSink:
    """Delivers Messages to PostHog's batch endpoint, `batch_size` events per request and up to
    LANES requests in parallel.

    host: ingestion host (the tracker passes its own default, the EU cloud, never the SDK's).
    request_timeout: seconds one HTTP request may take.
    """

    name = "PostHog"

    def __init__(self, *, api_key: str, host: str, request_timeout: float, batch_size: int):
        self.batch_size = batch_size
        self.request_timeout = request_timeout
        self._api_key = api_key
        self._shaped: list[dict[str, Any]] = []
        self._client = Client(
            api_key,
            host=host,
            # Shapes events only: the sending is ours, so that each outcome is a status code.
            send=False,
            before_send=self._keep,
            enable_exception_autocapture=False,
            # The SDK would otherwise add the machine's GeoIP to every event.
            disable_geoip=True,
        )

    @property
    def host(self) -> str:
        return str(self._client.host)

    def _keep(self, event: dict[str, Any]) -> dict[str, Any]:
        self._shaped.append(event)
        return event

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        """Send `batch` and return each event's outcome within about `budget_seconds`."""
        outcomes: dict[str, Outcome] = {}
        reasons: list[str] = []
        chunks: list[tuple[list[str], list[dict[str, Any]]]] = []
        for m in batch:
            size = len(m.to_json())
            if size > MAX_EVENT_BYTES:
                outcomes[m.uuid] = Outcome.REJECTED
                reasons.append(f"event of {size} bytes is over PostHog's 900 KiB limit")
                continue
            shaped = self._shape(m)
            if shaped is None:
                # Refused by the SDK (e.g. a $set with nothing to set): never sendable.
                outcomes[m.uuid] = Outcome.REJECTED
                reasons.append("the SDK refused the event")
                continue
            if not chunks or len(chunks[-1][0]) >= self.batch_size:
                chunks.append(([], []))
            chunks[-1][0].append(m.uuid)
            chunks[-1][1].append(shaped)
        answers: list[tuple[Outcome, str] | None] = [None] * len(chunks)
        posts = [
            threading.Thread(
                target=self._post, args=(events, answers, i), name="posthog-post", daemon=True
            )
            for i, (_, events) in enumerate(chunks)
        ]
        # Daemon threads, one per request: a request still hanging after the budget is
        # abandoned (its own timeout ends it) and cannot hold up the next delivery.
        deadline = time.monotonic() + budget_seconds
        for t in posts:
            t.start()
        for t in posts:
            t.join(max(0.0, deadline - time.monotonic()))
        for (uuids, _), answer in zip(chunks, answers, strict=True):
            outcome, reason = answer or (Outcome.RETRY, f"no answer within {budget_seconds:.1f}s")
            outcomes.update(dict.fromkeys(uuids, outcome))
            if reason:
                reasons.append(reason)
        return Delivery.of(batch, outcomes, reasons[-1] if reasons else "")

    def _post(
        self, events: list[dict[str, Any]], answers: list[tuple[Outcome, str] | None], i: int
    ) -> None:
        try:
            batch_post(
                self._api_key, self.host, gzip=True, timeout=self.request_timeout, batch=events
            )
            answers[i] = (Outcome.ACCEPTED, "")
        except Exception as exc:
            answers[i] = (outcome_of(exc), f"{type(exc).__name__}: {exc}")

    def _shape(self, m: Message) -> dict[str, Any] | None:
        """The event as the SDK would send it (its properties, timestamp format, $groups)."""
        self._shaped.clear()
        if m.kind == "set":
            sent = self._client.set(
                distinct_id=m.distinct_id, properties=m.properties, timestamp=m.sent_at, uuid=m.uuid
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
        return self._shaped[-1] if sent is not None and self._shaped else None

    def wait_ready(self) -> None:
        """Nothing to start: the SDK client is built in the constructor."""

    def close(self, budget_seconds: float) -> None:
        """Nothing to drain: requests still in flight are daemon threads the exit ends."""


def main() -> int:
    """The sender child's entry point (sender_process.py starts it)."""
    # Failures are reported by the parent, with the batch's fate; the SDK's own error lines
    # would only repeat them on stderr. (Not setLevel: the SDK's client resets the level.)
    sdk_log = logging.getLogger("posthog")
    sdk_log.addHandler(logging.NullHandler())
    sdk_log.propagate = False
    return serve(lambda settings: PostHogSink(**settings))
