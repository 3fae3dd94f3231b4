"""Durable store of the events that could not be delivered yet, and only those.

A SQLite file (no server to run, safe for several processes on one machine). Rows arrive when a
batch fails, when a flush or shutdown runs out of time, or when the in-memory buffer overflows
while the vendor is down; a row is deleted as soon as the vendor accepts it. It is not an event
log: a healthy process never writes to it.

Its times are epoch seconds (`time.time()`), the only wall clock tracking times itself by (an
event's own timestamp is for the vendor): the retry schedule is shared by the processes using
the file and outlives each of them, which a monotonic clock cannot be. The worker turns it into
a deadline on its own monotonic clock (`due_in`).
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.tracking.message import Message

_SCHEMA = """
CREATE TABLE IF NOT EXISTS undelivered (
    uuid            TEXT PRIMARY KEY,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    first_failed_at REAL NOT NULL,
    next_attempt_at REAL NOT NULL
);
-- Events PostHog refused for what they are (HTTP 400/413/422, over the size limit): retrying
-- cannot help, so they wait here for an operator instead of blocking the retry loop.
CREATE TABLE IF NOT EXISTS rejected (
    uuid        TEXT PRIMARY KEY,
    payload     TEXT NOT NULL,
    error       TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
"""
# Short: the file is shared only by this machine's processes, whose writes are brief; a longer
# wait would eat into a shutdown's budget.
BUSY_TIMEOUT_SECONDS = 0.5


class Outbox:
    """Undelivered events keyed by their uuid, with a per-row retry schedule.

    `retry_base_seconds` doubles with each failed attempt of a row, up to `retry_max_seconds`.
    Claimed rows are leased (their next attempt pushed into the future) so that two processes
    sharing the file do not send the same rows at the same time.
    """

    def __init__(
        self,
        path: Path,
        *,
        retry_base_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        lease_seconds: float = 60.0,
    ) -> None:
        self.path = path
        self.retry_base_seconds = retry_base_seconds
        self.retry_max_seconds = retry_max_seconds
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # Rows are written only on failure paths, so paying for a full sync is cheap and
            # keeps them through a power loss, not just a process crash.
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"cannot open the event outbox at {path}: {exc}; set EVENT_OUTBOX_PATH to a "
                "writable file path"
            ) from exc

    def put(self, messages: Iterable[Message], error: str, *, now: float | None = None) -> int:
        """Store messages for a later attempt; a uuid already stored keeps its row."""
        now = time.time() if now is None else now
        rows = []
        for i, m in enumerate(messages):
            rows.append((m.uuid, m.to_json(), error, now, now))
            if i % 20 == 19:
                # Encoding a large spill is a long stretch of Python; let a caller of track()
                # in another thread have the GIL now and then instead of after 5 ms.
                time.sleep(0)
        if not rows:
            return 0
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO undelivered (uuid, payload, attempts, last_error, first_failed_at,"
                " next_attempt_at) VALUES (?, ?, 0, ?, ?, ?) ON CONFLICT (uuid) DO NOTHING",
                rows,
            )
        return len(rows)

    def claim(self, limit: int, *, now: float | None = None) -> list[Message]:
        """Up to `limit` rows that are due, oldest first, leased to the caller."""
        now = time.time() if now is None else now
        with self._lock, self._conn:
            payloads = self._conn.execute(
                "UPDATE undelivered SET next_attempt_at = ? WHERE uuid IN ("
                " SELECT uuid FROM undelivered WHERE next_attempt_at <= ?"
                " ORDER BY first_failed_at, uuid LIMIT ?) RETURNING payload",
                (now + self.lease_seconds, now, limit),
            ).fetchall()
        return [Message.from_json(p) for (p,) in payloads]

    def delivered(self, uuids: Iterable[str]) -> None:
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM undelivered WHERE uuid = ?", [(u,) for u in uuids])

    def failed(self, uuids: Iterable[str], error: str, *, now: float | None = None) -> None:
        """Reschedule claimed rows after another failed attempt (exponential backoff)."""
        now = time.time() if now is None else now
        with self._lock, self._conn:
            self._conn.executemany(
                "UPDATE undelivered SET attempts = attempts + 1, last_error = ?,"
                " next_attempt_at = ? + min(?, ? * (1 << min(attempts, 30))) WHERE uuid = ?",
                [(error, now, self.retry_max_seconds, self.retry_base_seconds, u) for u in uuids],
            )

    def reject(self, messages: list[Message], error: str, *, now: float | None = None) -> None:
        """Move events PostHog will never accept out of the retry loop, keeping them."""
        now = time.time() if now is None else now
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO rejected (uuid, payload, error, rejected_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (uuid) DO NOTHING",
                [(m.uuid, m.to_json(), error, now) for m in messages],
            )
            self._conn.executemany(
                "DELETE FROM undelivered WHERE uuid = ?", [(m.uuid,) for m in messages]
            )

    def rejected(self) -> list[tuple[str, str]]:
        """(uuid, reason) of every event PostHog refused, oldest first."""
        with self._lock:
            return self._conn.execute(
                "SELECT uuid, error FROM rejected ORDER BY rejected_at, uuid"
            ).fetchall()

    def count(self) -> int:
        """Undelivered events (all processes sharing the file)."""
        with self._lock:
            n: int = self._conn.execute("SELECT count(*) FROM undelivered").fetchone()[0]
        return n

    def not_due(self, *, now: float | None = None) -> int:
        """Rows waiting out their backoff (or leased to a sender) at `now`."""
        now = time.time() if now is None else now
        with self._lock:
            n: int = self._conn.execute(
                "SELECT count(*) FROM undelivered WHERE next_attempt_at > ?", (now,)
            ).fetchone()[0]
        return n

    def summary(self) -> tuple[int, float | None, str | None]:
        """(rows, when the oldest first failed, the latest error) for operators."""
        with self._lock:
            count, oldest = self._conn.execute(
                "SELECT count(*), min(first_failed_at) FROM undelivered"
            ).fetchone()
            last = self._conn.execute(
                "SELECT last_error FROM undelivered ORDER BY next_attempt_at DESC LIMIT 1"
            ).fetchone()
        return count, oldest, last[0] if last else None

    def next_due(self) -> float | None:
        """When the earliest row becomes due (epoch seconds), or None if the outbox is empty."""
        with self._lock:
            due: float | None = self._conn.execute(
                "SELECT min(next_attempt_at) FROM undelivered"
            ).fetchone()[0]
        return due

    def due_in(self) -> float | None:
        """Seconds until the earliest row is due (0 if one is due now), None if empty.

        The schedule is wall-clock time because it is shared with other processes and outlives
        this one; a caller timing itself turns this into a deadline on its own clock.
        """
        due = self.next_due()
        return None if due is None else max(0.0, due - time.time())

    def forget(self, pattern: str) -> int:
        """Delete every stored event (undelivered or rejected) whose payload matches `pattern`.

        For erasing a tenant: its events must not be delivered, or kept, after it is gone.
        """
        regex = re.compile(pattern)
        removed = 0
        with self._lock, self._conn:
            for select, delete in (
                ("SELECT uuid, payload FROM undelivered", "DELETE FROM undelivered WHERE uuid = ?"),
                ("SELECT uuid, payload FROM rejected", "DELETE FROM rejected WHERE uuid = ?"),
            ):
                rows = self._conn.execute(select).fetchall()
                doomed = [(u,) for u, payload in rows if regex.search(payload)]
                self._conn.executemany(delete, doomed)
                removed += len(doomed)
        return removed

    def close(self) -> None:
        with self._lock:
            self._conn.close()
