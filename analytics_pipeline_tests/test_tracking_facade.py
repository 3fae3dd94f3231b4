"""The facade's contract with callers: the taxonomy, strictness, redaction, never raising.

Why: callers across the product rely on track() being safe to call anywhere, and the data team
relies on event names and properties being the ones in the registry. A typo must fail a test in
development, and must not take a request down in production.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from analytics_pipeline.errors import ConfigurationError, EventContractError
from analytics_pipeline.tracking import EVENTS, EventTracker, RedactionPolicy, TrackingConfig
from analytics_pipeline.tracking.email import (
    track_email_bounced,
    track_email_clicked,
    track_email_delivered,
    track_email_opened,
    track_email_replied,
    track_email_sent,
)
from analytics_pipeline.tracking.facade import VIOLATION_PROPERTY
from analytics_pipeline_tests.fake_posthog import production

SEED_TAXONOMY = {
    "email_sent",
    "email_delivered",
    "email_opened",
    "email_clicked",
    "email_bounced",
    "email_replied",
    "security_suspicious_activity",
    "security_data_access",
    "infra_connection_pool_metrics",
    "infra_error_rate",
    "infra_latency",
    "business_signup",
    "business_upgrade",
    "business_churn",
    "announcement_published",
}


def test_the_registry_holds_both_seeds_taxonomies():
    assert set(EVENTS) >= SEED_TAXONOMY
    assert {e for e in EVENTS if e.startswith("security_login_")}, "security_login_* family"
    assert {e for e in EVENTS if e.startswith("payment_")}, "the payment events"
    assert {e.category for e in EVENTS.values()} >= {"email", "security", "infra", "business"}


def test_outside_production_a_contract_violation_is_an_error_naming_it():
    tracker = EventTracker(TrackingConfig(environment="test"))
    with pytest.raises(EventContractError, match=r"'email_opend'.*register it"):
        tracker.track("u", "email_opend", {"tenant_id": "t", "email_id": "e"})
    with pytest.raises(EventContractError, match="missing required property 'email_id'"):
        tracker.track("u", "email_opened", {"tenant_id": "t"})
    with pytest.raises(EventContractError, match="'amount_cents' is a str, not Number"):
        tracker.track(
            "u", "payment_succeeded", {"tenant_id": "t", "amount_cents": "12.00", "currency": "EUR"}
        )
    with pytest.raises(EventContractError, match="distinct_id is empty"):
        tracker.track("", "business_churn", {"tenant_id": "t"})


def test_in_production_a_violation_is_reported_and_the_event_still_sent(
    posthog_server, tmp_path, caplog
):
    tracker = EventTracker(production(posthog_server, tmp_path))
    with caplog.at_level(logging.ERROR, logger="analytics_pipeline.tracking"):
        uuid = tracker.track("u", "email_opend", {"tenant_id": "t"})
    assert uuid is not None
    assert tracker.stats.contract_violations == 1
    assert any("email_opend" in r.getMessage() for r in caplog.records)
    assert tracker.flush() is True
    (event,) = posthog_server.events().values()
    assert event["event"] == "email_opend"
    assert event["properties"][VIOLATION_PROPERTY] == "unknown event"
    tracker.shutdown()


def test_track_never_raises_in_production_even_on_garbage(tmp_path):
    tracker = EventTracker(TrackingConfig(environment="production"))  # no key: log-only

    class Unprintable:
        def __repr__(self) -> str:
            raise RuntimeError("boom")

    assert tracker.track("u", "business_churn", {"tenant_id": "t", "x": Unprintable()}) is None
    assert tracker.track(None, None, 42) is None  # type: ignore[arg-type]
    assert tracker.stats.errors >= 1


def test_redaction_keeps_ids_dates_and_amounts():
    policy = RedactionPolicy()
    props = {
        "tenant_id": "tenant-001",
        "email_id": "3f2b8c1e-9d4a-4e7b-8c2d-1a2b3c4d5e6f",
        "day": "2026-03-31",
        "at": "2026-03-31T10:15:00+00:00",
        "amount_cents": 1999,
        "version": "1.2.3",
        "text_with_pii": "reach me at jo@x.io, 10.0.0.1, fe80::1:2:3, (415) 555-0100",
    }
    out = policy.properties(props, {})
    assert {k: out[k] for k in list(props)[:-1]} == {k: props[k] for k in list(props)[:-1]}
    assert out["text_with_pii"] == (
        "reach me at [redacted:email], [redacted:ip], [redacted:ip], [redacted:phone]"
    )


def test_redaction_is_configurable():
    props = {"first_name": "Jo", "company": "Acme", "detail": "x"}
    assert RedactionPolicy(strategy="drop").properties(props, {"detail": "free_text"}) == {
        "company": "Acme"
    }
    assert RedactionPolicy(allow=frozenset({"first_name"})).properties(props, {}) == {
        "first_name": "Jo",
        "company": "Acme",
        "detail": "x",
    }
    custom = RedactionPolicy(keys={"company": "name"}, scan_values=False)
    assert custom.properties({"company": "Acme", "x": "jo@x.io"}, {}) == {
        "company": "[redacted:name]",
        "x": "jo@x.io",
    }
    with pytest.raises(ConfigurationError, match="'scramble'"):
        RedactionPolicy(strategy="scramble")  # type: ignore[arg-type]


def test_bad_settings_name_the_value():
    with pytest.raises(ConfigurationError, match="ANALYTICS_ENV='prod'"):
        TrackingConfig.from_env({"ANALYTICS_ENV": "prod"})
    with pytest.raises(ConfigurationError, match=r"POSTHOG_HOST='eu\.i\.posthog\.com'"):
        TrackingConfig.from_env({"POSTHOG_HOST": "eu.i.posthog.com"})
    with pytest.raises(ConfigurationError, match="EVENT_REDACTION='none'"):
        TrackingConfig.from_env({"EVENT_REDACTION": "none"})


def test_typed_email_helpers_send_the_seed_shape(posthog_server, tmp_path: Path):
    tracker = EventTracker(production(posthog_server, tmp_path))
    ids = dict(user_id="user-1", tenant_id="t1", email_id="e1", campaign_id="c1")
    track_email_sent(tracker, **ids, mailbox_id="m1")
    track_email_delivered(tracker, **ids)
    track_email_opened(tracker, **ids)
    track_email_clicked(tracker, **ids, url="https://x.example/p?u=jo@x.io")
    track_email_bounced(tracker, **ids, bounce_type="hard")
    track_email_replied(tracker, **ids)
    assert tracker.flush() is True
    events = {e["event"]: e for e in posthog_server.events().values()}
    assert set(events) == {f"email_{n}" for n in SEED_NAMES}
    opened = events["email_opened"]
    assert opened["distinct_id"] == "user-1"
    assert opened["properties"]["$groups"] == {"tenant": "t1"}
    assert {k: opened["properties"][k] for k in ("tenant_id", "campaign_id", "email_id")} == {
        "tenant_id": "t1",
        "campaign_id": "c1",
        "email_id": "e1",
    }
    assert "mailbox_id" not in opened["properties"], "unset optional ids are not sent"
    assert events["email_clicked"]["properties"]["url"] == "https://x.example/p"
    assert events["email_bounced"]["properties"]["bounce_type"] == "hard"
    tracker.shutdown()


SEED_NAMES = ("sent", "delivered", "opened", "clicked", "bounced", "replied")


def test_config_is_one_object_per_process_configuration():
    from analytics_pipeline.tracking import get_tracker

    config = TrackingConfig(environment="test")
    assert get_tracker(config) is get_tracker(replace(config))
    assert get_tracker(config) is not get_tracker(replace(config, environment="development"))


def test_the_docs_list_every_registered_event_with_its_required_properties():
    text = (Path(__file__).resolve().parents[1] / "docs" / "EVENT_TRACKING.md").read_text()
    for spec in EVENTS.values():
        row = next((line for line in text.splitlines() if line.startswith(f"| {spec.name} |")), "")
        assert row, f"docs/EVENT_TRACKING.md has no row for {spec.name}"
        required = row.split("|")[4]
        assert [p.strip(" `") for p in required.split(",")] == list(spec.required), spec.name


def test_identify_without_properties_queues_nothing(posthog_server, tmp_path):
    """PostHog ignores an empty $set: queued, it would wait in the outbox forever."""
    tracker = EventTracker(production(posthog_server, tmp_path))
    assert tracker.identify("user-1") is None
    assert tracker.identify("user-1", {}) is None
    assert tracker.flush() is True
    assert posthog_server.requests == [] and tracker.pending_in_outbox() == 0
    tracker.shutdown()
