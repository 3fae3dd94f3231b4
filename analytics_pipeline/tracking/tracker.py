"""EventTracker: the facade wired to PostHog, the one place that chooses the vendor.

    EventTracker.track() -> TrackingFacade (validate, redact, log)      tracking/facade.py
                         -> DeliveryWorker (queue, batches, outbox)      tracking/delivery.py
                         -> ProcessSink (pipe to the sender child)       tracking/sender_process.py
                         -> PostHogSink (posthog SDK, HTTP status)       tracking/posthog_sink.py

Everything above the sink is vendor-neutral (tracking/sink.py is the interface). Swapping
vendors is a new sink module and a new `posthog_sender` here; a test runs the facade over a
second sink (analytics_pipeline_tests/test_tracking_sink_swap.py).
"""

from __future__ import annotations

from analytics_pipeline.tracking import posthog_sink
from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.tracking.facade import TrackingFacade
from analytics_pipeline.tracking.sender_process import ProcessSink
from analytics_pipeline.tracking.sink import SinkFactory


def posthog_sender(config: TrackingConfig) -> ProcessSink:
    """PostHog's sink, in a sender child process of its own (why: sender_process.py)."""
    return ProcessSink(
        posthog_sink.SENDER_COMMAND,
        posthog_sink.sender_settings(config),
        posthog_sink.PostHogSink.name,
    )


class EventTracker(TrackingFacade):
    """The tracking facade sending to PostHog (unless `sink_factory` says otherwise).

    `EventTracker(config)` is what callers build (or `get_tracker()`, one per process); all
    its behaviour is TrackingFacade's.
    """

    def __init__(
        self, config: TrackingConfig | None = None, *, sink_factory: SinkFactory | None = None
    ) -> None:
        super().__init__(config, sink_factory=sink_factory or posthog_sender)
