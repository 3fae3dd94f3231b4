"""Progress of long command-line work: a bar on a terminal, plain lines otherwise.

On a TTY, `rich` draws one bar per task (done / total, rows, elapsed). Anywhere else (a pipe, a
log file, CI) the same figures come as plain lines, one each time another tenth is done, so a
log shows progress without a line per item.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import dagster as dg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)


class Reporter:
    """One task's progress: `advance` as items (and rows) are done."""

    def __init__(self, label: str, total: int, unit: str, stream: TextIO | None = None) -> None:
        self.label, self.total, self.unit = label, max(total, 0), unit
        self.done = 0
        self.rows = 0
        self._stream = stream or sys.stderr
        self._started = time.monotonic()
        self._tenths = 0
        self._bar: Progress | None = None
        if self._stream.isatty():
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(unit),
                TextColumn("{task.fields[rows]:,} rows"),
                TimeElapsedColumn(),
                console=Console(file=self._stream),
                transient=False,
            )
            self._task = self._bar.add_task(label, total=self.total, rows=0)
            self._bar.start()

    def advance(self, n: int = 1, rows: int = 0) -> None:
        self.done = min(self.done + n, self.total)
        self.rows += rows
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rows=self.rows)
            return
        tenths = 10 * self.done // self.total if self.total else 10
        if tenths > self._tenths:
            self._tenths = tenths
            print(self.line(), file=self._stream, flush=True)

    def line(self) -> str:
        rows = f", {self.rows:,} rows" if self.rows else ""
        elapsed = time.monotonic() - self._started
        return f"{self.label}: {self.done:,}/{self.total:,} {self.unit}{rows}, {elapsed:.1f}s"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


@contextmanager
def reporting(label: str, total: int, unit: str) -> Iterator[Reporter]:
    reporter = Reporter(label, total, unit)
    try:
        yield reporter
    finally:
        reporter.close()


class RunWatcher:
    """Partitions materialized by the runs it is told to watch, polled by one thread."""

    def __init__(self, instance: dg.DagsterInstance, reporter: Reporter) -> None:
        self.reporter = reporter
        self._instance = instance
        self._cursors: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def watch(self, run_id: str) -> None:
        with self._lock:
            self._cursors.setdefault(run_id, None)

    def poll(self) -> None:
        with self._lock:
            watched = dict(self._cursors)
        for run_id, cursor in watched.items():
            result = self._instance.get_records_for_run(
                run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
            with self._lock:
                self._cursors[run_id] = result.cursor
            if result.records:
                self.reporter.advance(len(result.records))


@contextmanager
def watching_runs(instance: dg.DagsterInstance, label: str, total: int) -> Iterator[RunWatcher]:
    """One reporter for the runs it is told to `watch(run_id)` (in this process or in others,
    at once or in turn); their materializations are read every half second."""
    stop = threading.Event()
    with reporting(label, total, "asset partitions") as reporter:
        watcher = RunWatcher(instance, reporter)

        def poll() -> None:
            while True:
                finished = stop.is_set()
                watcher.poll()
                if finished:
                    return
                stop.wait(0.5)

        thread = threading.Thread(target=poll, name="progress-runs", daemon=True)
        thread.start()
        try:
            yield watcher
        finally:
            stop.set()
            thread.join(timeout=30)


@contextmanager
def watching_run(
    instance: dg.DagsterInstance, run_id: str, label: str, total: int
) -> Iterator[Reporter]:
    """Advance a reporter by each partition materialized in the run `run_id` while it runs (in
    this process: execute_in_process blocks), reading the run's events every half second."""
    with watching_runs(instance, label, total) as watcher:
        watcher.watch(run_id)
        yield watcher.reporter
