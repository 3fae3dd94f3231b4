"""The event-tracking facade as a Dagster resource (assets and sensors take it as `tracking`)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import cast

import dagster as dg
from pydantic import Field

from analytics_pipeline.tracking import EventTracker, TrackingConfig, get_tracker
from analytics_pipeline.tracking.redaction import Strategy


class EventTrackingResource(dg.ConfigurableResource["EventTrackingResource"]):
    """Sends product and pipeline events through the facade; flushes when a step ends.

    Every field left unset comes from the environment (docs/EVENT_TRACKING.md). The PostHog API
    key is read only from POSTHOG_API_KEY, never from resource config, so it never shows in the
    UI or in run configs.
    """

    environment: str | None = Field(
        default=None,
        description="'production' sends to PostHog; anything else only logs. Default: "
        "$ANALYTICS_ENV, else 'development'.",
    )
    host: str | None = Field(
        default=None,
        description="PostHog ingestion host. Default: $POSTHOG_HOST, else https://eu.i.posthog.com.",
    )
    outbox_path: str | None = Field(
        default=None,
        description="SQLite file keeping undelivered events until they are sent. Default: "
        "$EVENT_OUTBOX_PATH, else $ANALYTICS_PIPELINE_HOME/event_outbox.sqlite3.",
    )
    redaction: str | None = Field(
        default=None,
        description="PII strategy: mask, hash or drop. Default: $EVENT_REDACTION, else mask.",
    )
    step_flush_timeout_seconds: float = Field(
        default=5.0,
        description="How long the end of a step may wait for PostHog; the rest is kept in the "
        "outbox and sent later.",
    )

    def config(self) -> TrackingConfig:
        """The facade's settings: these fields where set, the environment for the rest."""
        base = TrackingConfig.from_env()
        # Not checked here: RedactionPolicy refuses an unknown strategy, naming it.
        strategy = cast(Strategy, self.redaction) if self.redaction else None
        return replace(
            base,
            environment=self.environment or base.environment,
            host=self.host or base.host,
            outbox_path=Path(self.outbox_path) if self.outbox_path else base.outbox_path,
            redaction=replace(base.redaction, strategy=strategy) if strategy else base.redaction,
        )

    @property
    def tracker(self) -> EventTracker:
        """The process-wide tracker for this configuration (one sender thread per process)."""
        return get_tracker(self.config())

    def flush(self) -> bool:
        """Deliver or durably store what this process tracked (Dagster may end the process
        right after a step, and in-memory events would go with it)."""
        return self.tracker.flush(self.step_flush_timeout_seconds)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        """Flush when the step's resources are torn down (see `flush`)."""
        self.flush()
