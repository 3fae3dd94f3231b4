"""A PostHog ingestion stand-in on 127.0.0.1 that speaks the SDK's batch endpoint.

It answers `POST /batch/` (gzip or plain JSON: `{"api_key", "batch": [...], "sent_at"}`) like
PostHog: 200 `{"status": 1}`. Faults are injected by mode: "error" answers 503 (or the `status`
given to set_mode), "slow" waits `delay` seconds before answering, "refuse" closes the listening
socket so connections are refused, "ok" serves again. Every request is recorded with its arrival
time; `events()` dedupes by uuid, as PostHog does.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal

from analytics_pipeline.tracking import RedactionPolicy, TrackingConfig

Mode = Literal["ok", "error", "slow", "refuse"]


@dataclass
class Request:
    at: float
    path: str
    api_key: str
    batch: list[dict]
    raw: bytes
    status: int = 200


@dataclass
class FakePostHog:
    port: int = 0
    mode: Mode = "ok"
    delay: float = 0.0
    # What "error" mode answers.
    error_status: int = 503
    requests: list[Request] = field(default_factory=list)
    # The most requests being answered at once (how parallel the client sends).
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._server: ThreadingHTTPServer | None = None
        self._serve()

    @property
    def in_flight(self) -> int:
        """Requests received and not answered yet (e.g. held by the "slow" mode)."""
        with self._lock:
            return self._in_flight

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_mode(self, mode: Mode, delay: float = 0.0, status: int = 503) -> None:
        self.delay = delay
        self.error_status = status
        if mode == "refuse" and self._server is not None:
            self._stop_server()
        elif mode != "refuse" and self._server is None:
            self._serve()
        self.mode = mode

    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.status == 200]

    def events(self) -> dict[str, dict]:
        """Accepted events by uuid (PostHog keeps one per uuid)."""
        return {e["uuid"]: e for r in self.accepted() for e in r.batch}

    def accepted_count(self) -> int:
        """Accepted events including duplicates (same uuid delivered twice)."""
        return sum(len(r.batch) for r in self.accepted())

    def wait_for(self, n: int, timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if len(got) >= n:
                return got
            time.sleep(0.05)
        return self.events()

    def close(self) -> None:
        self._stop_server()

    def _serve(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                body = (
                    gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                )
                payload = json.loads(body)
                with fake._lock:
                    fake._in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                with fake._lock:
                    fake._in_flight -= 1
                status = fake.error_status if fake.mode == "error" else 200
                with fake._lock:
                    fake.requests.append(
                        Request(
                            time.monotonic(),
                            self.path,
                            payload.get("api_key", ""),
                            payload.get("batch", []),
                            body,
                            status,
                        )
                    )
                reply = b'{"status": 1}' if status == 200 else b'{"detail": "unavailable"}'
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                except OSError:
                    pass  # the client gave up (timeout): PostHog would have kept the batch

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.allow_reuse_address = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def production(server: FakePostHog, tmp_path: Path, **overrides: object) -> TrackingConfig:
    """A sending (production) configuration pointed at `server`, with short timeouts and
    backoff so that fault tests finish quickly; `overrides` replace any field."""
    config = TrackingConfig(
        api_key="phc_test_key",
        host=server.url,
        environment="production",
        outbox_path=tmp_path / "outbox.sqlite3",
        request_timeout=0.5,
        shutdown_timeout=3.0,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        redaction=RedactionPolicy(salt="test-salt"),
    )
    return replace(config, **overrides)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
