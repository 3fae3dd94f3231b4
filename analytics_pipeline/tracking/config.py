"""Settings of the event-tracking facade, from the environment or given explicitly."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings import HOME_ENV, tracking_environ
from analytics_pipeline.tracking.redaction import STRATEGIES, RedactionPolicy

API_KEY_ENV = "POSTHOG_API_KEY"
HOST_ENV = "POSTHOG_HOST"
ENVIRONMENT_ENV = "ANALYTICS_ENV"
OUTBOX_ENV = "EVENT_OUTBOX_PATH"
REDACTION_ENV = "EVENT_REDACTION"
SALT_ENV = "EVENT_REDACTION_SALT"

# The SDK defaults to the US cloud; this product's data lives in the EU.
DEFAULT_HOST = "https://eu.i.posthog.com"
ENVIRONMENTS = ("development", "test", "staging", "production")


@dataclass(frozen=True)
class TrackingConfig:
    """How the tracker behaves.

    api_key: PostHog project key; without it nothing is sent (log-only).
    host: ingestion host, https://eu.i.posthog.com unless POSTHOG_HOST says otherwise.
    environment: only "production" sends; the others log only (local events would pollute
        the funnels). Also decides strictness: outside production a contract violation raises.
    flush_at / flush_interval: a batch leaves at 20 events or 10 s after its first event.
    batches_per_send: full batches handed to the vendor at once (sent in parallel), so a
        backlog drains at several batches per round trip.
    request_timeout: seconds one HTTP request to PostHog may take (kept under
        shutdown_timeout, so a step-end flush can see a slow request through).
    shutdown_timeout: the most a shutdown (or a step-end flush) waits for PostHog; what is not
        delivered by then goes to the outbox.
    outbox_path: SQLite file holding undelivered events until they are sent.
    max_buffered: events held in memory while PostHog is down before spilling to the outbox.
    retry_base_seconds / retry_max_seconds: outbox retry backoff (doubling, capped).
    redaction: the PII policy applied before an event is logged, queued or stored.
    """

    api_key: str | None = None
    host: str = DEFAULT_HOST
    environment: str = "development"
    flush_at: int = 20
    flush_interval: float = 10.0
    batches_per_send: int = 4
    request_timeout: float = 3.0
    shutdown_timeout: float = 5.0
    outbox_path: Path = Path(".analytics_pipeline/event_outbox.sqlite3")
    max_buffered: int = 10_000
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 300.0
    redaction: RedactionPolicy = field(default_factory=RedactionPolicy)

    def __post_init__(self) -> None:
        if self.environment not in ENVIRONMENTS:
            raise ConfigurationError(
                f"{ENVIRONMENT_ENV}={self.environment!r} is not one of {', '.join(ENVIRONMENTS)}"
                " (only 'production' sends events to PostHog)"
            )
        parts = urlsplit(self.host)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(
                f"{HOST_ENV}={self.host!r} is not an http(s) URL; use e.g. {DEFAULT_HOST}"
            )
        for name in (
            "flush_at",
            "flush_interval",
            "batches_per_send",
            "request_timeout",
            "shutdown_timeout",
            "max_buffered",
        ):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"tracking {name}={getattr(self, name)!r} must be > 0")

        if self.sends and not self.redaction.salt:
            raise ConfigurationError(
                f"{SALT_ENV} is not set: in production, e-mail addresses and phone numbers used "
                "as ids are hashed with it (unsalted, anyone with an address list could match "
                f"them); set {SALT_ENV} to a random secret of 16+ characters, the same on every "
                "host"
            )

    @property
    def sends(self) -> bool:
        """True when events go to PostHog: a key is set and this is production."""
        return bool(self.api_key) and self.environment == "production"

    @property
    def strict(self) -> bool:
        """Contract violations raise to the caller everywhere but production."""
        return self.environment != "production"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> TrackingConfig:
        env = tracking_environ() if env is None else env
        home = Path(env.get(HOME_ENV) or ".analytics_pipeline")
        strategy = env.get(REDACTION_ENV) or "mask"
        if strategy not in STRATEGIES:
            raise ConfigurationError(
                f"{REDACTION_ENV}={strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        values: dict[str, object] = {
            "api_key": env.get(API_KEY_ENV) or None,
            "host": env.get(HOST_ENV) or DEFAULT_HOST,
            "environment": env.get(ENVIRONMENT_ENV) or "development",
            "outbox_path": Path(env.get(OUTBOX_ENV) or home / "event_outbox.sqlite3"),
            "redaction": RedactionPolicy(strategy=strategy, salt=env.get(SALT_ENV, "")),
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
