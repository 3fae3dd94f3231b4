"""Which process owns the embedded server, so that exactly one stops it.

The owner (the process that started the server, or adopted it) is recorded in `<home>/owner.json`
with the port. A process that finds the server running with a live owner attaches as a guest and
leaves it alone; one that finds the owner dead (killed) adopts the server and stops it in its
turn, so a killed run never leaks a server for good. Every decision is taken under one file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from analytics_pipeline.embedded.cluster import pid_alive

log = logging.getLogger(__name__)


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Hold the exclusive lock on `lock_file` (other processes on the same home wait)."""
    with open(lock_file, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class OwnerFile:
    """`owner.json`: the owning process's id and the server's port."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def choose_port(self) -> int:
        """The port of the last run if it is free (stable URLs), else any free one."""
        try:
            last = json.loads(self.path.read_text()).get("port")
        except (OSError, ValueError):
            last = None
        return last if isinstance(last, int) and _port_free(last) else _free_port()

    def owner(self) -> int | None:
        """The recorded owner's process id, if any."""
        try:
            return int(json.loads(self.path.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def claim(self, port: int | None) -> None:
        """Record this process as the owner of the server on `port`."""
        self.path.write_text(json.dumps({"pid": os.getpid(), "port": port}))

    def release(self) -> None:
        """Record that no process owns the server (it was stopped)."""
        self.path.unlink(missing_ok=True)

    def attach(self, port: int) -> bool:
        """This process's part in a server found running: True if it owns it now.

        Its own (re-entered), or adopted from a dead owner; False as a guest of a live owner.
        """
        owner = self.owner()
        if owner == os.getpid():
            return True
        if owner is not None and pid_alive(owner):
            log.info("attached to embedded PostgreSQL on port %s (owned by pid %s)", port, owner)
            return False
        self.claim(port)
        log.info("adopted embedded PostgreSQL on port %s left by pid %s", port, owner)
        return True
