"""Delivery through the real posthog SDK to a PostHog stand-in on 127.0.0.1.

Why: the facade promises batching (20 events or 10 s), production-only sending, redaction of
what goes on the wire, a bounded shutdown, and no lost event when PostHog errors, hangs or
refuses connections. Each of those is a claim about bytes on a socket, so they are checked there,
with the SDK the product ships, not a mock of it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline_tests.fake_posthog import production

ROOT = Path(__file__).resolve().parents[1]


def _wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def sent(tracker: EventTracker, n: int, prefix: str = "e") -> list[str]:
    return [
        tracker.track(f"user-{i}", "email_sent", {"tenant_id": "t1", "email_id": f"{prefix}{i}"})
        for i in range(n)
    ]


def test_batches_leave_at_20_events_and_the_rest_after_10_seconds(posthog_server, tmp_path):
    tracker = EventTracker(production(posthog_server, tmp_path))
    started = time.monotonic()
    uuids = sent(tracker, 45)
    got = posthog_server.wait_for(45, timeout=60)
    assert set(got) == set(uuids)
    # Two full batches first; the 5 left waited for the interval (a busy machine only makes
    # it later, never earlier).
    assert [len(r.batch) for r in posthog_server.accepted()] == [20, 20, 5]
    last = posthog_server.accepted()[-1]
    assert last.at - started >= 9.0, f"partial batch left after {last.at - started:.1f}s"
    assert {r.path for r in posthog_server.accepted()} == {"/batch/"}
    assert {r.api_key for r in posthog_server.accepted()} == {"phc_test_key"}
    tracker.shutdown()
    assert tracker.pending_in_outbox() == 0


def test_only_production_with_a_key_sends(posthog_server, tmp_path, caplog):
    caplog.set_level("INFO", logger="analytics_pipeline.tracking")
    for config in (
        production(posthog_server, tmp_path, environment="development"),
        production(posthog_server, tmp_path, environment="staging"),
        production(posthog_server, tmp_path, api_key=None),
    ):
        tracker = EventTracker(config)
        assert not tracker.sends
        sent(tracker, 3, prefix=config.environment)
        assert tracker.flush() is True
    # A tracker that sends does reach this server (below): only then is "nothing" meaningful.
    assert posthog_server.requests == []
    logged = [r.getMessage() for r in caplog.records if "email_sent" in r.getMessage()]
    assert len(logged) == 9, "every event is logged at info, sent or not"
    assert not (tmp_path / "outbox.sqlite3").exists(), "log-only mode touches no disk"

    tracker = EventTracker(production(posthog_server, tmp_path))
    uuids = sent(tracker, 3)
    assert tracker.flush() is True
    assert set(posthog_server.events()) == set(uuids)
    tracker.shutdown()


def test_the_default_host_is_the_eu_cloud_not_the_sdks_us_default():
    assert TrackingConfig.from_env({}).host == "https://eu.i.posthog.com"
    assert TrackingConfig.from_env({"POSTHOG_HOST": "https://ph.example"}).host == (
        "https://ph.example"
    )


def _personal_events(tracker: EventTracker) -> None:
    """Every path a caller could leak by: declared and undeclared properties, nested values,
    keys, groups, the distinct id, person properties, and a contract violation's text."""
    tracker.track(
        "ada@example.com",
        "email_clicked",
        {
            "tenant_id": "t1",
            "email_id": "e1",
            "url": "https://t.example/c/42?to=ada@example.com&token=leaked",
            "first_name": "Ada Lovelace",
            "note": "call +44 20 7946 0958",
            "context": {"reason": "Ada Lovelace", "ada@example.com": 1},
        },
        groups={"tenant": "t1", "inviter": "ada@example.com"},
    )
    tracker.track(
        "user-1",
        "security_login_failed",
        {"method": "password", "ip": "203.0.113.9", "reason": "Ada Lovelace typed leaked"},
    )
    # Wrongly typed (production sends it, marked): the violation names the type, not the value.
    tracker.track(
        "user-1",
        "payment_failed",
        {"tenant_id": "t1", "currency": "EUR", "amount_cents": "Ada Lovelace"},
    )
    tracker.identify("user-1", {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"})


SECRETS = ["ada@example.com", "Ada Lovelace", "203.0.113.9", "+44 20 7946 0958", "leaked"]


def test_nothing_personal_reaches_the_wire_the_logs_or_the_outbox(posthog_server, tmp_path, caplog):
    caplog.set_level("INFO", logger="analytics_pipeline.tracking")
    tracker = EventTracker(production(posthog_server, tmp_path))
    _personal_events(tracker)
    assert tracker.flush() is True
    wire = b"".join(r.raw for r in posthog_server.accepted()).decode()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "email_clicked" in logs and "payment_failed" in logs
    for secret in SECRETS:
        assert secret not in wire, f"{secret!r} left the process"
        assert secret not in logs, f"{secret!r} was logged"
    events = {e["event"]: e for e in posthog_server.events().values()}
    click = events["email_clicked"]
    assert click["properties"]["url"] == "https://t.example/c/42"
    assert click["distinct_id"].startswith("sha256:")
    assert click["properties"]["$groups"] == {"tenant": "t1", "inviter": "[redacted:email]"}
    assert click["properties"]["context"] == {
        "reason": "[redacted:free_text]",
        "[redacted:email]": 1,
    }
    assert events["payment_failed"]["properties"]["contract_violation"] == (
        "property 'amount_cents' is a str, not Number"
    )
    assert events["$set"]["$set"] == {
        "email": "[redacted:email]",
        "name": "[redacted:name]",
        "plan": "pro",
    }

    # The same events while PostHog is down land in the outbox file: redacted there too.
    posthog_server.set_mode("refuse")
    _personal_events(tracker)
    tracker.shutdown()
    assert tracker.pending_in_outbox() == 4
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.sqlite3*"))
    for secret in SECRETS:
        assert secret.encode() not in stored, f"{secret!r} was written to the outbox"


def test_production_needs_a_salt_for_hashed_ids(posthog_server, tmp_path):
    with pytest.raises(ConfigurationError, match="EVENT_REDACTION_SALT is not set"):
        production(posthog_server, tmp_path, redaction=RedactionPolicy())


def test_identify_becomes_a_person_property_update(posthog_server, tmp_path):
    tracker = EventTracker(production(posthog_server, tmp_path))
    tracker.identify("user-7", {"plan": "growth", "seats": 4})
    assert tracker.flush() is True
    (event,) = posthog_server.events().values()
    assert (event["event"], event["distinct_id"]) == ("$set", "user-7")
    assert event["$set"] == {"plan": "growth", "seats": 4}
    tracker.shutdown()


def test_hash_strategy_keeps_people_joinable_without_revealing_them(posthog_server, tmp_path):
    policy = RedactionPolicy(strategy="hash", salt="test-salt")
    tracker = EventTracker(production(posthog_server, tmp_path, redaction=policy))
    tracker.track("u", "security_login_failed", {"method": "sso", "ip": "203.0.113.9"})
    tracker.track("u", "security_login_failed", {"method": "sso", "ip": "203.0.113.9"})
    assert tracker.flush() is True
    ips = {e["properties"]["ip"] for e in posthog_server.events().values()}
    assert len(ips) == 1 and next(iter(ips)).startswith("sha256:")
    tracker.shutdown()


@pytest.mark.parametrize("fault", ["error", "slow", "refuse"])
def test_every_event_arrives_after_posthog_comes_back(posthog_server, tmp_path, fault):
    """503s, requests that time out, refused connections: all delivered afterwards, once."""
    tracker = EventTracker(production(posthog_server, tmp_path))
    before = sent(tracker, 10, prefix="before")
    assert tracker.flush() is True
    posthog_server.set_mode(fault, delay=2.0)  # "slow": longer than the 0.5 s request timeout
    during = sent(tracker, 65, prefix="during")
    tracker.flush(timeout=3.0)
    _wait_until(lambda: tracker.pending_in_outbox() > 0, timeout=30)
    assert tracker.pending_in_outbox() > 0, "undelivered events are kept on disk"
    posthog_server.set_mode("ok")
    got = posthog_server.wait_for(75, timeout=90)
    assert set(got) == set(before) | set(during), "every event arrives"
    _wait_until(lambda: tracker.pending_in_outbox() == 0, timeout=60)
    assert tracker.pending_in_outbox() == 0, "delivered events leave the outbox"
    if fault != "slow":
        # Only a timed-out request (which the server did take) may be sent twice, and then
        # with the same uuid, which PostHog keeps once.
        assert posthog_server.accepted_count() == 75
    tracker.shutdown()


def test_shutdown_is_bounded_and_keeps_what_it_could_not_send(posthog_server, tmp_path):
    """PostHog takes 120 s to answer; shutdown has a 2 s budget. It must return before the
    answer (the bound under load is the budget plus storing the rest, see
    docs/EVENT_TRACKING.md), with every event in the outbox."""
    posthog_server.set_mode("slow", delay=120)
    config = production(posthog_server, tmp_path, request_timeout=60.0, shutdown_timeout=2.0)
    tracker = EventTracker(config)
    uuids = sent(tracker, 25)
    # True or False (whether the batch's "no answer" came back before the budget ran out, or
    # the budget ran out first): either way every event is kept.
    tracker.shutdown()
    # Order, not time: shutdown returned while PostHog still held every request unanswered.
    assert posthog_server.accepted() == [], "shutdown waited for PostHog's answer"
    assert tracker.pending_in_outbox() == 25

    posthog_server.set_mode("ok")
    later = EventTracker(production(posthog_server, tmp_path))
    got = posthog_server.wait_for(25, timeout=60)
    assert set(uuids) <= set(got), "the next process delivers what the last one kept"
    later.shutdown()
    assert later.pending_in_outbox() == 0


def test_a_process_exiting_while_posthog_is_down_loses_nothing(posthog_server, tmp_path):
    """The atexit path: a script tracks and exits; PostHog refuses; the next run delivers."""
    posthog_server.set_mode("refuse")
    script = textwrap.dedent(
        f"""
        import json, sys
        from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig
        from pathlib import Path
        t = EventTracker(TrackingConfig(api_key="k", host={posthog_server.url!r},
            environment="production", outbox_path=Path({str(tmp_path / "outbox.sqlite3")!r}),
            request_timeout=0.5, shutdown_timeout=2.0, redaction=RedactionPolicy(salt="s")))
        ids = [t.track("u", "business_signup", {{"tenant_id": f"t{{i}}", "plan": "pro"}})
               for i in range(30)]
        print(json.dumps(ids))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    uuids = json.loads(out.stdout)
    posthog_server.set_mode("ok")
    tracker = EventTracker(production(posthog_server, tmp_path))
    got = posthog_server.wait_for(30, timeout=60)
    assert set(uuids) <= set(got)
    tracker.shutdown()


def test_operators_can_inspect_and_deliver_the_outbox_from_the_cli(posthog_server, tmp_path):
    posthog_server.set_mode("refuse")
    tracker = EventTracker(production(posthog_server, tmp_path, shutdown_timeout=1.0))
    uuids = sent(tracker, 7)
    assert tracker.flush(timeout=60) is True, "handed to PostHog, which refused: stored"
    tracker.shutdown()
    assert tracker.pending_in_outbox() == 7
    posthog_server.set_mode("ok")
    env = {
        "PATH": str(Path(sys.executable).parent),
        "HOME": str(tmp_path),
        "ANALYTICS_ENV": "production",
        "POSTHOG_API_KEY": "phc_cli",
        "POSTHOG_HOST": posthog_server.url,
        "EVENT_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "EVENT_REDACTION_SALT": "test-salt",
    }
    cli = [sys.executable, "-m", "analytics_pipeline.cli", "events"]
    status = subprocess.run([*cli, "status"], env=env, capture_output=True, text=True, cwd=ROOT)
    assert status.returncode == 0, status.stderr
    assert "7 undelivered event(s)" in status.stdout
    assert "Connection" in status.stdout or "connect" in status.stdout.lower(), status.stdout
    assert posthog_server.events() == {}, "status only looks"
    deliver = subprocess.run(
        [*cli, "deliver", "--timeout", "120"], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert deliver.returncode == 0, deliver.stdout + deliver.stderr
    assert "delivered 7, 0 left" in deliver.stdout
    assert set(posthog_server.events()) == set(uuids)


def test_the_sender_process_never_outlives_its_parent(posthog_server, tmp_path):
    """The SDK runs in a child process (so its work does not hold the caller's GIL); a parent
    that dies without any cleanup (os._exit) must not leave that child behind."""
    script = textwrap.dedent(
        f"""
        import os
        from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig
        from analytics_pipeline.tracking.tracker import posthog_sender
        from pathlib import Path
        senders = []
        def sender(config):
            senders.append(posthog_sender(config))
            return senders[-1]
        t = EventTracker(TrackingConfig(api_key="k", host={posthog_server.url!r},
            environment="production", outbox_path=Path({str(tmp_path / "outbox.sqlite3")!r}),
            redaction=RedactionPolicy(salt="s")), sink_factory=sender)
        t.track("u", "business_signup", {{"tenant_id": "t1", "plan": "pro"}})
        print(senders[0].pid, flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    child = Path(f"/proc/{int(out.stdout)}")
    deadline = time.monotonic() + 10
    while child.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not child.exists() or "Z" in (child / "stat").read_text().split()[2]


def test_a_full_disk_loses_nothing_and_never_raises(posthog_server, tmp_path, monkeypatch):
    """PostHog down and the outbox unwritable: events stay queued, flush and shutdown say so
    without raising; once the disk is back, the outbox takes them and PostHog gets them all."""
    real_put = Outbox.put
    disk_full = True

    def put(self, messages, error, **kw):
        if disk_full:
            raise sqlite3.OperationalError("database or disk is full")
        return real_put(self, messages, error, **kw)

    monkeypatch.setattr(Outbox, "put", put)
    posthog_server.set_mode("refuse")
    tracker = EventTracker(production(posthog_server, tmp_path, shutdown_timeout=1.0))
    uuids = sent(tracker, 30)
    assert tracker.flush(timeout=1.0) is False
    assert tracker.stats.lost == 0
    disk_full = False
    assert tracker.flush(timeout=3.0) is True
    tracker.shutdown()
    assert tracker.pending_in_outbox() == 30
    posthog_server.set_mode("ok")
    later = EventTracker(production(posthog_server, tmp_path))
    assert set(posthog_server.wait_for(30, timeout=60)) == set(uuids)
    later.shutdown()


def test_an_event_posthog_refuses_is_kept_aside_and_does_not_stall_the_rest(
    posthog_server, tmp_path
):
    tracker = EventTracker(production(posthog_server, tmp_path))
    huge = tracker.track("u", "business_churn", {"tenant_id": "t1", "blob": "x" * 1_000_000})
    assert tracker.flush() is True
    assert tracker.stats.rejected == 1
    # PostHog is healthy: the next events go out at once, not after a backoff.
    uuids = sent(tracker, 20)
    assert set(posthog_server.wait_for(20, timeout=60)) == set(uuids)
    assert tracker.stats.stored == 0, "no backoff, no detour through the outbox"
    assert huge not in posthog_server.events()
    assert tracker.pending_in_outbox() == 0, "not retried forever"
    tracker.shutdown()
    (rejected,) = Outbox(tmp_path / "outbox.sqlite3").rejected()
    assert rejected[0] == huge and "900 KiB" in rejected[1]


@pytest.mark.parametrize(
    ("status", "kept_aside"),
    [(400, True), (413, True), (422, True), (401, False), (429, False), (500, False)],
)
def test_each_events_fate_is_what_posthog_answered(posthog_server, tmp_path, status, kept_aside):
    """The outcome is read from PostHog's HTTP status, not from timing: a refusal of the batch
    itself (400/413/422) sets the events aside for good, without a backoff; anything a retry
    can change (a wrong key, rate limiting, a server error) keeps them for another attempt."""
    posthog_server.set_mode("error", status=status)
    tracker = EventTracker(production(posthog_server, tmp_path))
    uuids = sent(tracker, 3)
    assert tracker.flush() is True, "an answer came, whatever it said"
    assert tracker.stats.delivered == 0
    rejected = Outbox(tmp_path / "outbox.sqlite3").rejected()
    if kept_aside:
        assert {u for u, _ in rejected} == set(uuids)
        assert all(str(status) in reason for _, reason in rejected), rejected
        assert tracker.stats.rejected == 3 and tracker.pending_in_outbox() == 0
    else:
        assert rejected == [] and tracker.stats.rejected == 0
        assert tracker.pending_in_outbox() == 3, "kept for a retry"
        posthog_server.set_mode("ok")
        assert set(posthog_server.wait_for(3, timeout=60)) == set(uuids)
    tracker.shutdown()


def test_identify_with_nothing_left_after_redaction_is_not_queued(posthog_server, tmp_path):
    policy = RedactionPolicy(strategy="drop", salt="test-salt")
    tracker = EventTracker(production(posthog_server, tmp_path, redaction=policy))
    assert tracker.identify("user-1", {"email": "ada@example.com"}) is None
    assert tracker.identify("", {"plan": "pro"}) is None  # production: no person, nothing sent
    assert tracker.flush() is True
    assert posthog_server.requests == [] and tracker.pending_in_outbox() == 0
    tracker.shutdown()


def test_a_backlog_goes_out_as_parallel_batches_of_20(posthog_server, tmp_path):
    """80 events kept in the outbox (PostHog refused them) go out as 4 batches in flight at
    once when PostHog is back, not one after another."""
    posthog_server.set_mode("refuse")
    first = EventTracker(production(posthog_server, tmp_path))
    uuids = sent(first, 80)
    assert first.flush(timeout=60) is True
    first.shutdown()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    assert outbox.count() == 80
    # Every row due for its retry, so the next process claims all 80 at once.
    _wait_until(lambda: outbox.not_due() == 0, timeout=60)
    assert outbox.not_due() == 0
    outbox.close()
    posthog_server.set_mode("slow", delay=2.0)
    config = production(posthog_server, tmp_path, request_timeout=10.0, shutdown_timeout=15.0)
    tracker = EventTracker(config)
    got = posthog_server.wait_for(80, timeout=60)
    assert set(got) == set(uuids)
    assert [len(r.batch) for r in posthog_server.accepted()] == [20, 20, 20, 20]
    assert posthog_server.max_in_flight == 4, "the four batches were in flight together"
    tracker.shutdown()


def test_memory_stays_bounded_when_posthog_is_slower_than_the_callers(posthog_server, tmp_path):
    posthog_server.set_mode("slow", delay=1.0)
    config = production(posthog_server, tmp_path, request_timeout=3.0, max_buffered=50)
    tracker = EventTracker(config)
    uuids = sent(tracker, 500)
    # The worker spills between deliveries (callers never touch the disk): the bound holds once
    # the delivery in flight returns.
    _wait_until(lambda: tracker.queued <= 50, timeout=60)
    assert tracker.queued <= 50, "the rest went to the outbox"
    assert tracker.stats.stored >= 200, "spilled to the outbox, not held in memory"
    posthog_server.set_mode("ok")
    assert set(posthog_server.wait_for(500, timeout=120)) == set(uuids)
    tracker.shutdown()


def test_a_forked_child_does_not_inherit_the_parents_events(posthog_server, tmp_path):
    script = textwrap.dedent(
        f"""
        import json, os, sys
        from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig
        from pathlib import Path
        t = EventTracker(TrackingConfig(api_key="k", host={posthog_server.url!r},
            environment="production", outbox_path=Path({str(tmp_path / "outbox.sqlite3")!r}),
            shutdown_timeout=60.0, redaction=RedactionPolicy(salt="s")))
        for i in range(5):
            t.track("u", "business_signup", {{"tenant_id": f"t{{i}}", "plan": "pro"}})
        pid = os.fork()
        if pid == 0:
            print(json.dumps({{"child_sends": t.sends, "child_queued": t.queued}}), flush=True)
            sys.exit(0)  # runs atexit: must not wait for, or store, the parent's events
        os.waitpid(pid, 0)
        print(json.dumps({{"outbox_after_child": t.pending_in_outbox()}}))
        t.shutdown()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr
    seen = {k: v for line in out.stdout.splitlines() for k, v in json.loads(line).items()}
    assert seen["child_sends"] is False and seen["child_queued"] == 0, "the child logs only"
    # Had the child's exit flushed the parent's tracker, nobody would have worked its queue:
    # the flush would have run out of time and stored the parent's 5 events in the outbox.
    assert seen["outbox_after_child"] == 0, "the child's exit stored the parent's events"
    assert len(posthog_server.wait_for(5, timeout=60)) == 5
    assert posthog_server.accepted_count() == 5, "sent once, by the parent"
