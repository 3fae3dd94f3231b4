"""Benchmark: what `track` costs its caller, and whether 10,000 events all arrive.

Scenarios, each tracking N events (default 10,000) as fast as one thread can, with every event
logged at INFO to a file (the facade always logs; a file handler is a realistic, cheap sink):
- baseline: the bare posthog SDK's `capture` to a healthy server (no validation, redaction,
  logging or durability): the cost floor the facade is compared with;
- log-only: the facade outside production;
- healthy: the facade in production, PostHog (a stand-in on 127.0.0.1) answering;
- down: PostHog refusing connections while the events are tracked, then coming back.
Each runs flat out (one thread calling track in a loop) and paced (--rate events/s, a service
doing other work between events). The PostHog stand-in runs in a process of its own.
For each: median and p99 of the caller's time per call, calls/s, then delivery: unique events
PostHog received, events left in the outbox, and sustained delivery rate (events/s from the
first call until the last event was accepted).

    .venv/bin/python -u bench/tracking_bench.py [--events 10000]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import posthog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analytics_pipeline.tracking import EventTracker, RedactionPolicy, TrackingConfig  # noqa: E402
from analytics_pipeline_tests.fake_posthog import free_port  # noqa: E402

_SERVER = """
import json, sys
from analytics_pipeline_tests.fake_posthog import FakePostHog
server = FakePostHog(port=int(sys.argv[1]))
print("ready", flush=True)
for line in sys.stdin:
    print(json.dumps([len(server.events()), server.accepted_count()]), flush=True)
server.close()
"""


class RemotePostHog:
    """The PostHog stand-in in a process of its own: in this one, its request handling would
    compete with the measured caller for the GIL and inflate the figures. "Down" is no process
    listening on the port (connections refused) until `up()`."""

    def __init__(self, up: bool = True) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        if up:
            self.up()

    def up(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER, str(self.port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout.readline().strip() == "ready"

    def counts(self) -> tuple[int, int]:
        """(unique events received, accepted including duplicates)."""
        if self.proc is None:
            return 0, 0
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        unique, accepted = json.loads(self.proc.stdout.readline())
        return unique, accepted

    def wait_for(self, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.counts()[0] < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.counts()[0]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


def props(i: int) -> dict[str, object]:
    return {
        "tenant_id": f"tenant-{i % 50:03d}",
        "email_id": f"e-{i}",
        "campaign_id": f"c-{i % 200}",
        "mailbox_id": f"m-{i % 40}",
    }


@dataclass
class Timing:
    """Per-call costs in microseconds: wall clock (what the caller waits, machine noise
    included) and the calling thread's CPU time (the code's own work)."""

    wall: list[float]
    cpu: list[float]
    seconds: float
    rounds: int

    def p99s(self, costs: list[float]) -> list[float]:
        size = len(costs) // self.rounds
        return [pct(costs[i * size : (i + 1) * size], 0.99) for i in range(self.rounds)]


def pct(costs: list[float], q: float) -> float:
    ordered = sorted(costs)
    return ordered[max(0, int(len(ordered) * q) - 1)]


def timed_calls(n: int, call, rate: float | None = None, rounds: int = 3) -> Timing:
    """`rounds` x `n` calls; `rate` paces them (events/s), None = flat out."""
    wall, cpu = [], []
    started = time.perf_counter()
    for i in range(n * rounds):
        if rate is not None:
            # Like a service handling requests: it does other things between events.
            pause = started + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        call(i)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((t1 - t0) / 1000)
        cpu.append((c1 - c0) / 1000)
    return Timing(wall, cpu, time.perf_counter() - started, rounds)


def report(label: str, t: Timing) -> tuple[float, float]:
    """Prints p50 and the median over rounds of p99 (one noisy round on a shared VM does not
    decide it), wall and CPU; returns (wall p99, cpu p99)."""
    wall_p99 = statistics.median(t.p99s(t.wall))
    cpu_p99 = statistics.median(t.p99s(t.cpu))
    print(
        f"{label:<22} p50 {pct(t.wall, 0.5):5.1f} us  p99 {wall_p99:6.1f} us"
        f" (rounds: {', '.join(f'{p:.0f}' for p in t.p99s(t.wall))})"
        f"  cpu p99 {cpu_p99:5.1f} us  {len(t.wall) / t.seconds:8.0f} calls/s"
    )
    return wall_p99, cpu_p99


def run_facade(scenario: str, n: int, rate: float | None, work: Path) -> tuple[float, float]:
    label = f"{scenario} {'flat-out' if rate is None else f'@{rate:,.0f}/s'}"
    server = RemotePostHog(up=scenario != "down")
    tracker = EventTracker(
        TrackingConfig(
            api_key="phc_bench",
            host=server.url,
            environment="production",
            outbox_path=work / f"{scenario}-{rate}.sqlite3",
            retry_max_seconds=2.0,
            redaction=RedactionPolicy(salt="bench-salt"),
        )
    )
    started = time.perf_counter()
    timing = timed_calls(n, lambda i: tracker.track(f"u{i}", "email_sent", props(i)), rate)
    result = report(label, timing)
    n = len(timing.wall)
    if scenario == "down":
        flushed = time.perf_counter()
        tracker.flush(timeout=30)
        print(
            f"{'':<22} PostHog down: {tracker.pending_in_outbox()} events in the outbox "
            f"{time.perf_counter() - flushed:.2f}s after the last call; PostHog back now"
        )
        server.up()
        started = time.perf_counter()
    delivered = server.wait_for(n, timeout=300)
    took = time.perf_counter() - started
    deadline = time.monotonic() + 30
    while tracker.pending_in_outbox() and time.monotonic() < deadline:
        time.sleep(0.1)
    print(
        f"{'':<22} delivered {delivered}/{n} unique ({server.counts()[1]} accepted "
        f"incl. duplicates), outbox {tracker.pending_in_outbox()}, "
        f"{delivered / took:,.0f} events/s"
        + (" draining the outbox" if scenario == "down" else " first call to last delivery")
    )
    tracker.shutdown()
    server.close()
    if delivered != n:
        print(f"LOSS: {n - delivered} events never arrived")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=2_000, help="paced scenarios' events/s")
    args = parser.parse_args()
    n = args.events
    work = Path(tempfile.mkdtemp(prefix="tracking_bench_"))
    handler = logging.FileHandler(work / "events.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    for name in ("analytics_pipeline.tracking", "posthog"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).propagate = False
    logging.getLogger("analytics_pipeline.tracking").setLevel(logging.INFO)
    results: dict[str, tuple[float, float]] = {}
    print(f"3 rounds of {n} events per scenario; log file {work / 'events.log'}")

    for rate in (None, args.rate):
        label = f"sdk-only {'flat-out' if rate is None else f'@{rate:,.0f}/s'}"
        server = RemotePostHog()
        client = posthog.Client("phc_bench", host=server.url, flush_at=20, flush_interval=10)
        timing = timed_calls(
            n,
            lambda i, c=client: c.capture("email_sent", distinct_id=f"u{i}", properties=props(i)),
            rate,
        )
        results[label] = report(label, timing)
        client.shutdown()
        server.close()

    # The facade's own cost, with no sender thread or process competing: the floor at each pace.
    log_only = EventTracker(TrackingConfig(environment="development"))
    for rate in (None, args.rate):
        label = f"log-only {'flat-out' if rate is None else f'@{rate:,.0f}/s'}"
        timing = timed_calls(n, lambda i: log_only.track(f"u{i}", "email_sent", props(i)), rate)
        results[label] = report(label, timing)

    for scenario in ("healthy", "down"):
        for rate in (None, args.rate):
            label = f"{scenario} {'flat-out' if rate is None else f'@{rate:,.0f}/s'}"
            results[label] = run_facade(scenario, n, rate, work)

    print("\np99 per call (target < 50 us), against the bare SDK's capture at the same pace:")
    for label, (p99, cpu) in results.items():
        pace = label.split(" ", 1)[1]
        base = results[f"sdk-only {pace}"][0]
        verdict = "ok" if p99 < 50 else "over"
        print(
            f"  {label:<22} wall {p99:7.1f} us = {p99 / base:4.2f}x sdk-only"
            f"  cpu {cpu:5.1f} us  {verdict}"
        )


if __name__ == "__main__":
    main()
