"""Event delivery on a busy machine: the sender child's start-up never costs a batch.

Why (issue 11): the sender child imported SQLAlchemy and more (0.55 s idle, 21 s under load)
and its start-up counted against the 4 s batch budget, so on a loaded machine it was killed and
respawned before it answered: with a healthy PostHog, no event arrived while the process lived
(all went to the outbox) and shutdown overran its bound. These tests use real processes and the
real SDK against the PostHog stand-in on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from analytics_pipeline.tracking.posthog_sink import SENDER_COMMAND
from analytics_pipeline.tracking.sender_child import CONFIG_ENV

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("sqlalchemy", "dagster", "pandas", "numpy", "psycopg", "pydantic")


def test_the_sender_child_imports_only_the_sdk_and_says_when_it_is_ready(posthog_server):
    settings = {"api_key": "k", "host": posthog_server.url, "request_timeout": 1, "batch_size": 20}
    child = subprocess.Popen(
        SENDER_COMMAND,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, CONFIG_ENV: json.dumps(settings), "PYTHONPROFILEIMPORTTIME": "1"},
    )
    try:
        first = child.stdout.readline()
        child.stdin.close()
        imports = child.stderr.read().decode()
        assert child.wait(timeout=60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
    assert json.loads(first) == {"ready": True}, "the first line says it is ready"
    modules = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in imports.splitlines()}
    assert "posthog" in modules
    assert not modules & set(HEAVY), f"the child imported {sorted(modules & set(HEAVY))}"


SLOW_START = textwrap.dedent(
    """
    import os, time
    # Only in the sender child (it alone has this variable): a start-up slower than any
    # batch budget, as on a machine with every core busy.
    if "ANALYTICS_TRACKING_SENDER" in os.environ:
        time.sleep(float(os.environ["SLOW_START_SECONDS"]))
    """
)

TRACK_AND_WAIT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig
    url, outbox, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    t = EventTracker(TrackingConfig(api_key="k", host=url, environment="production",
        outbox_path=Path(outbox), redaction=RedactionPolicy(salt="s")))
    ids = [t.track(f"u{i}", "business_signup", {"tenant_id": f"t{i}", "plan": "pro"})
           for i in range(n)]
    flushed = t.flush()  # its 5 s budget starts once the sender is running
    # The process lives until every event is delivered (or 240 s): the test then checks
    # they reached PostHog, not the outbox, while it lived.
    deadline = time.monotonic() + 240
    while t.stats.delivered < n and time.monotonic() < deadline:
        time.sleep(0.1)
    delivered_alive = t.stats.delivered
    started = time.monotonic()
    t.shutdown()
    print(json.dumps({"ids": ids, "delivered_alive": delivered_alive, "flushed": flushed,
                      "stored": t.stats.stored, "shutdown": time.monotonic() - started,
                      "outbox": t.pending_in_outbox()}))
    """
)


def _track_and_wait(server, tmp_path: Path, n: int, env: dict[str, str]) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            TRACK_AND_WAIT,
            server.url,
            str(tmp_path / "outbox.sqlite3"),
            str(n),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_child_slower_to_start_than_the_budget_still_delivers_the_first_batch(
    posthog_server, tmp_path
):
    """The child takes 8 s to start, twice the 4 s batch budget: before the fix its first
    batch timed out, went to the outbox and the child was respawned, again and again."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_START)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "SLOW_START_SECONDS": "8"}
    result = _track_and_wait(posthog_server, tmp_path, 60, env)
    assert result["flushed"] is True, "a flush waits for the sender's start, then delivers"
    assert result["delivered_alive"] == 60, "delivered while the process lived"
    assert result["stored"] == 0, "no batch was given up on"
    assert set(posthog_server.events()) == set(result["ids"])
    assert result["outbox"] == 0


def test_every_event_arrives_while_the_process_lives_on_a_busy_machine(posthog_server, tmp_path):
    """Four CPU-bound processes on two cores (bounded: killed at the end, and each stops by
    itself after 10 minutes): 2,000 events reach PostHog before the process exits, and the
    shutdown after them stays within its 5 s budget (plus the slack documented for storing)."""
    hogs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import time\nend = time.time() + 600\nwhile time.time() < end: pass",
            ],
            start_new_session=True,
        )
        for _ in range(4)
    ]
    try:
        result = _track_and_wait(posthog_server, tmp_path, 2000, dict(os.environ))
    finally:
        for hog in hogs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(hog.pid, signal.SIGKILL)
            hog.wait()
    assert result["delivered_alive"] == 2000, result
    assert set(posthog_server.events()) == set(result["ids"])
    assert result["outbox"] == 0
    # Nothing was left to send: shutdown only stops the child. Far below the 5 s budget's
    # documented bound, whatever the load.
    assert result["shutdown"] < 5 + 1 + 4, result["shutdown"]
