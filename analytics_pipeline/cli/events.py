"""`analytics-pipeline events`: report the outbox of undelivered PostHog events, or deliver it."""

from __future__ import annotations

import argparse
import datetime as dt
import time

from analytics_pipeline.errors import ConfigurationError


def cmd_events(args: argparse.Namespace) -> int:
    """Print where events go and what the outbox holds; `deliver`: send it, 1 if some is left."""
    from analytics_pipeline.tracking import EventTracker, TrackingConfig
    from analytics_pipeline.tracking.outbox import Outbox

    config = TrackingConfig.from_env()
    if config.sends:
        print(f"events: sent to {config.host} (environment {config.environment})")
    else:
        print(
            f"events: log-only (environment {config.environment}; sending needs "
            "ANALYTICS_ENV=production and POSTHOG_API_KEY)"
        )
    if not config.outbox_path.exists():
        print(f"outbox {config.outbox_path}: none (nothing was ever undelivered)")
        return 0
    outbox = Outbox(config.outbox_path)
    count, oldest, error = outbox.summary()
    rejected = len(outbox.rejected())
    outbox.close()
    age = (
        f", oldest since {dt.datetime.fromtimestamp(oldest, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
        if oldest
        else ""
    )
    print(f"outbox {config.outbox_path}: {count} undelivered event(s){age}")
    if error:
        print(f"last error: {error}")
    if rejected:
        print(
            f"{rejected} event(s) PostHog refused for what they are (table `rejected`, with the "
            "reason): not retried; fix the call site, the events are kept for inspection"
        )
    if args.action == "status" or count == 0:
        return 0
    if not config.sends:
        raise ConfigurationError(
            "cannot deliver: set ANALYTICS_ENV=production and POSTHOG_API_KEY to send the outbox"
        )
    tracker = EventTracker(config)
    deadline = time.monotonic() + args.timeout
    while tracker.pending_in_outbox() and time.monotonic() < deadline:
        time.sleep(0.5)
    tracker.shutdown()
    left = tracker.pending_in_outbox()
    print(f"delivered {count - left}, {left} left")
    return 0 if left == 0 else 1
