"""Runs a vendor sink in a child process, so its work never competes with callers for the GIL.

Why a process: the SDK's per-event enrichment, JSON encoding, gzip and HTTP stack are long
stretches of Python. In the caller's interpreter they hold the GIL while a request thread wants
to run track(): measured here, that alone put track()'s p99 at 140-430 us (target: 50 us).
In a child they run on the other core; the parent's worker only writes one JSON line per batch
to a pipe and reads one line back.

Vendor-neutral: the child's command (its vendor module's entry point, which calls
sender_child.serve) and the settings it builds its sink from are given by the wiring
(tracking/tracker.py).

Protocol (one JSON object per line): the child first says {"ready": true} once it has imported
its vendor module (which imports nothing else of the pipeline); the parent waits for that up to
STARTUP_TIMEOUT_SECONDS, outside any batch's budget, so a slow start on a busy machine never
makes a batch "unknown". Then the parent writes {"id", "budget", "batch": [message...]}; the
child answers {"id", "accepted": [uuid...], "retry": [uuid...], "rejected": [uuid...],
"reason"}, each event's outcome as the vendor answered it. An answer that does not come within
the budget makes the batch "retry" for the parent (kept in the outbox and sent again later; the
vendor drops the duplicate by uuid) and the child is replaced, so no batch queues behind a hung
child. The child exits when its stdin closes (the parent exited, even by SIGKILL).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence

from analytics_pipeline.tracking.message import Message
from analytics_pipeline.tracking.sender_child import CONFIG_ENV
from analytics_pipeline.tracking.sink import Delivery, Outcome

# The child's start-up (Python, the SDK's imports) took 0.5 s idle and 21 s beside six
# CPU-bound processes: wait that long and more for its "ready", then count it as failed.
STARTUP_TIMEOUT_SECONDS = 120.0


class ProcessSink:
    """A Sink whose deliveries happen in a child process running `command`.

    command: argv of the child (a vendor module's entry point calling sender_child.serve).
    settings: what the child builds its sink from; passed in its environment, not argv (argv
        is world-readable in ps, and the settings hold the API key).
    name: the vendor, as log lines name it.
    """

    def __init__(self, command: Sequence[str], settings: Mapping[str, object], name: str) -> None:
        self.name = name
        self._command = list(command)
        self._settings = json.dumps(dict(settings))
        self._child: subprocess.Popen[bytes] | None = None
        self._ready = False
        # Set once the current child said "ready", or failed to: what a flush waits for.
        self._settled = threading.Event()
        self._closed = False
        self._buffer = b""
        self._next_id = 0
        self._spawn()  # now, so the first batch does not wait for the child's imports

    def _spawn(self) -> None:
        # The key travels in the environment, not argv: argv is world-readable in ps.
        env = {**os.environ, CONFIG_ENV: self._settings}
        self._ready = False
        self._settled.clear()
        self._child = subprocess.Popen(
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            # Not in the caller's process group: a Ctrl-C meant for the caller must not kill
            # the child before the caller's shutdown has handed it the last batch.
            start_new_session=True,
        )
        self._buffer = b""

    def deliver(self, batch: list[Message], budget_seconds: float) -> Delivery:
        if self._closed:
            # A worker still finishing after shutdown must not start a child nobody stops.
            return Delivery.retry_all(batch, "the tracker is shut down")
        if self._child is None or self._child.poll() is not None:
            self._spawn()
        child = self._child
        if child is None or child.stdin is None:
            return Delivery.retry_all(batch, "sender process unavailable")
        if not self._ready:
            problem = self._wait_ready(child)
            self._settled.set()
            if problem:
                self._kill()
                return Delivery.retry_all(batch, problem)
        # The budget starts now that the child is listening.
        deadline = time.monotonic() + budget_seconds
        self._next_id += 1
        request_id = self._next_id
        parts = []
        for m in batch:
            parts.append(m.to_json())
            # Encoding is the only Python work here; let callers have the GIL between events.
            time.sleep(0)
        line = f'{{"id":{request_id},"budget":{budget_seconds},"batch":[{",".join(parts)}]}}\n'
        try:
            child.stdin.write(line.encode())
            child.stdin.flush()
        except OSError as exc:
            self._kill()
            return Delivery.retry_all(batch, f"sender process unavailable: {exc}")
        while True:
            answer = self._read_line(child, deadline)
            if answer is None:
                died = child.poll() is not None
                self._kill()
                if died:
                    return Delivery.retry_all(batch, "sender process exited")
                return Delivery.retry_all(batch, f"no answer within {budget_seconds:.1f}s")
            reply = json.loads(answer)
            if reply["id"] != request_id:
                continue  # cannot happen with one request in flight; never misattribute
            outcomes = dict.fromkeys(reply["accepted"], Outcome.ACCEPTED)
            outcomes.update(dict.fromkeys(reply["retry"], Outcome.RETRY))
            outcomes.update(dict.fromkeys(reply["rejected"], Outcome.REJECTED))
            return Delivery.of(batch, outcomes, reply["reason"])

    @property
    def pid(self) -> int | None:
        """The running child's process id (None before it starts or after close): for
        operators and tests checking that it never outlives its parent."""
        child = self._child
        return child.pid if child is not None else None

    def wait_ready(self) -> None:
        """Wait (at most STARTUP_TIMEOUT_SECONDS) until the child is ready, or has failed to
        start; returns at once when it is already running. Called by a flush, whose budget is
        for delivering, not for the child's start-up."""
        if not self._ready and not self._closed:
            self._settled.wait(STARTUP_TIMEOUT_SECONDS)

    def _wait_ready(self, child: subprocess.Popen[bytes]) -> str | None:
        """Wait for the child's "ready"; the problem if it did not come, else None."""
        answer = self._read_line(child, time.monotonic() + STARTUP_TIMEOUT_SECONDS)
        if answer is None:
            if self._closed:
                return "the tracker is shut down"
            if child.poll() is not None:
                return f"sender process exited while starting (exit {child.returncode})"
            return f"sender process not ready within {STARTUP_TIMEOUT_SECONDS:.0f}s"
        if json.loads(answer).get("ready") is not True:
            return "sender process answered before it was ready"
        self._ready = True
        return None

    def _read_line(self, child: subprocess.Popen[bytes], deadline: float) -> bytes | None:
        if child.stdout is None:  # not so: spawned with stdout=PIPE; typed as optional
            return None
        fd = child.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _kill(self) -> None:
        child, self._child = self._child, None
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()

    def close(self, budget_seconds: float) -> None:
        """Close the child's stdin (it finishes its batch and exits); kill it after the budget.

        Killing is safe: a batch the child still held was stored in the outbox by the worker.
        """
        self._closed = True
        child, self._child = self._child, None
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(timeout=max(0.0, budget_seconds))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
