"""The facade over a second vendor: swapping the sink changes the wire, nothing else.

Why (issue 12): "only one module knows PostHog" is a claim about the layers, and a claim is
proved by doing it. A second `Sink` (NdjsonSink, below: newline-delimited JSON to a collector
on 127.0.0.1, its own status codes) runs under the same facade and delivery worker as PostHog,
and the same scenarios must give the same events, in the same order, redacted the same way,
with the same outbox behaviour when the vendor is down or refuses an event.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analytics_pipeline.tracking import (
    Delivery,
    EventTracker,
    Outcome,
    TrackingConfig,
    TrackingFacade,
)
from analytics_pipeline.tracking.facade import VIOLATION_PROPERTY
from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.outbox import Outbox
from analytics_pipeline_tests.fake_posthog import FakePostHog, production

# What the PostHog SDK adds to every event; not the facade's doing, so not compared.
SDK_PROPERTIES = {
    *("$lib", "$lib_version", "$geoip_disable", "$groups", "$is_server"),
    *("$os", "$os_version", "$os_distro", "$python_runtime", "$python_version"),
}
# The collector refuses a line this big, as PostHog refuses an event over 900 KiB.
MAX_LINE_BYTES = 64 * 1024


@dataclass
class Collector:
    """A collector on 127.0.0.1 taking `POST /ingest`, one JSON event per line: 200 when it
    took the lines, 503 while `down`, 413 for a line over MAX_LINE_BYTES."""

    down: bool = False
    lines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                lines = body.splitlines()
                if collector.down:
                    status = 503
                elif any(len(line) > MAX_LINE_BYTES for line in lines):
                    status = 413
                else:
                    status = 200
                    with collector._lock:
                        collector.lines.extend(json.loads(line) for line in lines)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/ingest"

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.lines)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class NdjsonSink:
    """A second vendor: the whole batch as one request of JSON lines, the outcome read from
    the status (200 accepted, 400/413/422 rejected, anything else or no answer retried)."""

    name = "the collector"

    def __init__(self, url: str) -> None:
        self.url = url

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        body = "\n".join(
            json.dumps(
                {
                    "id": m.uuid,
                    "type": "identify" if m.kind == "set" else "track",
                    "name": m.event,
                    "user": m.distinct_id,
                    "props": m.properties,
                    "groups": m.groups or {},
                }
            )
            for m in batch
        )
        request = urllib.request.Request(self.url, data=body.encode(), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=budget_seconds):
                outcome, reason = Outcome.ACCEPTED, ""
        except urllib.error.HTTPError as exc:
            refused = exc.code in (400, 413, 422)
            outcome = Outcome.REJECTED if refused else Outcome.RETRY
            reason = f"collector answered {exc.code}"
        except OSError as exc:
            outcome, reason = Outcome.RETRY, f"collector unreachable: {exc}"
        return Delivery.of(batch, dict.fromkeys((m.uuid for m in batch), outcome), reason)

    def wait_ready(self) -> None:
        """Nothing to start."""

    def close(self, budget_seconds: float) -> None:
        """Nothing to release."""


@dataclass
class Vendor:
    """One vendor behind the facade: how to build the tracker, read what arrived (as
    (event, distinct_id, properties, groups), in arrival order) and take the vendor down."""

    name: str
    tracker: Callable[[TrackingConfig], TrackingFacade]
    received: Callable[[], list[tuple[str, str, dict[str, Any], dict[str, str]]]]
    set_down: Callable[[bool], None]


def _posthog_events(server: FakePostHog) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
    out = []
    for r in server.accepted():
        for e in r.batch:
            props = e.get("$set") if e["event"] == "$set" else e["properties"]
            groups = e["properties"].get("$groups", {})
            user = {k: v for k, v in props.items() if k not in SDK_PROPERTIES}
            out.append((e["event"], e["distinct_id"], user, groups))
    return out


@pytest.fixture(params=["posthog", "ndjson"])
def vendor(request: pytest.FixtureRequest, posthog_server: FakePostHog) -> Iterator[Vendor]:
    if request.param == "posthog":
        yield Vendor(
            "posthog",
            EventTracker,
            lambda: _posthog_events(posthog_server),
            lambda down: posthog_server.set_mode("refuse" if down else "ok"),
        )
        return
    collector = Collector()

    def received() -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
        return [(e["name"], e["user"], e["props"], e["groups"]) for e in collector.received()]

    def set_down(down: bool) -> None:
        collector.down = down

    yield Vendor(
        "ndjson",
        lambda config: TrackingFacade(config, sink_factory=lambda _: NdjsonSink(collector.url)),
        received,
        set_down,
    )
    collector.close()


def _scenario(tracker: TrackingFacade) -> None:
    """Personal data everywhere, a contract violation, an identify, in a known order."""
    tracker.track(
        "ada@example.com",
        "email_clicked",
        {
            "tenant_id": "t1",
            "email_id": "e1",
            "url": "https://t.example/c/42?to=ada@example.com",
            "first_name": "Ada Lovelace",
        },
        groups={"tenant": "t1"},
    )
    tracker.track("user-1", "email_opend", {"tenant_id": "t1"})  # unknown: sent, marked
    tracker.identify("user-1", {"email": "ada@example.com", "plan": "pro"})
    for i in range(5):
        tracker.track("user-2", "email_sent", {"tenant_id": "t1", "email_id": f"e{i}"})


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


EXPECTED = [
    (
        "email_clicked",
        "sha256:",  # a prefix: an e-mail address as id is always hashed
        {
            "tenant_id": "t1",
            "email_id": "e1",
            "url": "https://t.example/c/42",
            "first_name": "[redacted:name]",
        },
        {"tenant": "t1"},
    ),
    ("email_opend", "user-1", {"tenant_id": "t1", VIOLATION_PROPERTY: "unknown event"}, {}),
    ("$set", "user-1", {"email": "[redacted:email]", "plan": "pro"}, {}),
    *[("email_sent", "user-2", {"tenant_id": "t1", "email_id": f"e{i}"}, {}) for i in range(5)],
]


def test_validation_redaction_and_order_are_the_facades_whatever_the_vendor(
    vendor: Vendor, posthog_server: FakePostHog, tmp_path: Path
) -> None:
    tracker = vendor.tracker(production(posthog_server, tmp_path))
    _scenario(tracker)
    assert tracker.flush() is True
    got = vendor.received()
    assert [(e, p, g) for e, _, p, g in got] == [(e, p, g) for e, _, p, g in EXPECTED]
    ids = [(d, want) for (_, d, _, _), (_, want, _, _) in zip(got, EXPECTED, strict=True)]
    assert all(d.startswith(want) for d, want in ids), ids
    assert tracker.stats.contract_violations == 1
    tracker.shutdown()


def test_a_vendor_down_keeps_every_event_and_delivers_it_once_back(
    vendor: Vendor, posthog_server: FakePostHog, tmp_path: Path
) -> None:
    vendor.set_down(True)
    tracker = vendor.tracker(production(posthog_server, tmp_path))
    _scenario(tracker)
    assert tracker.flush() is True, "handed over, refused, stored"
    assert tracker.pending_in_outbox() == len(EXPECTED)
    assert vendor.received() == []
    vendor.set_down(False)
    _wait_until(lambda: tracker.pending_in_outbox() == 0, timeout=60)
    assert tracker.pending_in_outbox() == 0, "delivered from the outbox"
    got = vendor.received()
    assert sorted(e for e, *_ in got) == sorted(e for e, *_ in EXPECTED), "each event once"
    assert tracker.stats.redelivered == len(EXPECTED)
    tracker.shutdown()


def test_an_event_the_vendor_refuses_is_kept_aside_without_a_backoff(
    vendor: Vendor, posthog_server: FakePostHog, tmp_path: Path
) -> None:
    tracker = vendor.tracker(production(posthog_server, tmp_path))
    huge = tracker.track("u", "business_churn", {"tenant_id": "t1", "blob": "x" * 1_000_000})
    assert tracker.flush() is True
    assert tracker.stats.rejected == 1
    _scenario(tracker)
    assert tracker.flush() is True
    assert len(vendor.received()) == len(EXPECTED), "the next events went out at once"
    assert tracker.stats.stored == 0 and tracker.pending_in_outbox() == 0
    tracker.shutdown()
    ((uuid, _reason),) = Outbox(tmp_path / "outbox.sqlite3").rejected()
    assert uuid == huge
