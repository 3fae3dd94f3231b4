"""Vendor-neutral event tracking (PostHog behind it): import from here, never from posthog.

    from analytics_pipeline.tracking import get_tracker
    get_tracker().track(user_id, "email_opened", {"tenant_id": t, "email_id": e})

See docs/EVENT_TRACKING.md for the taxonomy, the redaction policy and the delivery guarantees.
"""

from __future__ import annotations

import importlib
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analytics_pipeline.errors import EventContractError
    from analytics_pipeline.tracking.config import TrackingConfig
    from analytics_pipeline.tracking.events import EVENTS, EventSpec
    from analytics_pipeline.tracking.facade import TrackingFacade
    from analytics_pipeline.tracking.redaction import RedactionPolicy
    from analytics_pipeline.tracking.sink import Delivery, Outcome, Sink
    from analytics_pipeline.tracking.stats import TrackerStats
    from analytics_pipeline.tracking.tracker import EventTracker

# Imported on first use (PEP 562), so that the sender child process, which imports only
# tracking.message, .sink, .sender_child and .posthog_sink, does not pay for the facade (and
# SQLAlchemy, through settings) at start-up.
_EXPORTS = {
    "Delivery": "analytics_pipeline.tracking.sink",
    "EVENTS": "analytics_pipeline.tracking.events",
    "EventContractError": "analytics_pipeline.errors",
    "EventSpec": "analytics_pipeline.tracking.events",
    "EventTracker": "analytics_pipeline.tracking.tracker",
    "Outcome": "analytics_pipeline.tracking.sink",
    "RedactionPolicy": "analytics_pipeline.tracking.redaction",
    "Sink": "analytics_pipeline.tracking.sink",
    "TrackerStats": "analytics_pipeline.tracking.stats",
    "TrackingConfig": "analytics_pipeline.tracking.config",
    "TrackingFacade": "analytics_pipeline.tracking.facade",
}


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "EVENTS",
    "Delivery",
    "EventContractError",
    "EventSpec",
    "EventTracker",
    "Outcome",
    "RedactionPolicy",
    "Sink",
    "TrackerStats",
    "TrackingConfig",
    "TrackingFacade",
    "get_tracker",
]

_trackers: dict[tuple[TrackingConfig, int], EventTracker] = {}
_lock = threading.Lock()


def get_tracker(config: TrackingConfig | None = None) -> EventTracker:
    """The process's tracker for `config` (default: from the environment), created once.

    One per configuration and process: a long-lived process (the Dagster daemon evaluating
    sensors, say) must not start a new sender thread for every use.
    """
    from analytics_pipeline.tracking.config import TrackingConfig
    from analytics_pipeline.tracking.tracker import EventTracker

    config = config or TrackingConfig.from_env()
    # Keyed by pid too: a forked child inherits the parent's tracker but not its threads.
    key = (config, os.getpid())
    with _lock:
        tracker = _trackers.get(key)
        if tracker is None:
            tracker = _trackers[key] = EventTracker(config)
        return tracker
