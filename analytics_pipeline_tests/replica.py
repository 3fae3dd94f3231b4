"""A real primary and a real hot-standby replica, from the Debian PostgreSQL 15 on the machine.

The primary is initialised with `initdb`, the standby cloned from it with `pg_basebackup -R`
(which writes standby.signal and primary_conninfo), and both run on free loopback ports in a
temporary folder of their own, as the embedded server's system user when the tests run as root
(PostgreSQL refuses root). Both servers are stopped, and the folder removed, at the end.
Missing binaries fail the test: a replica test must never pass by not running.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics_pipeline.embedded.system_user import SYSTEM_USER, ensure_system_user
from analytics_pipeline_tests.fake_posthog import free_port

PG_BIN = Path(os.environ.get("ANALYTICS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "outreach"


def _identity() -> dict:
    if os.geteuid() != 0:
        return {}
    ensure_system_user()
    # user= alone keeps root's groups: switch group and supplementary groups too.
    return {"user": SYSTEM_USER, "group": SYSTEM_USER, "extra_groups": []}


class Server:
    """One PostgreSQL server of the pair: its data folder, port and log."""

    def __init__(self, root: Path, name: str) -> None:
        self.data = root / name
        self.port = free_port()
        self.sockets = root / "sockets"
        self.log = root / f"{name}.log"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self, *settings: str) -> None:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={self.sockets}",
            *(f"-c {s}" for s in settings),
        ]
        run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", " ".join(options), "-w",
            "start")  # fmt: skip

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


def run(program: str, *args: str) -> None:
    binary = PG_BIN / program
    if not binary.exists():
        pytest.fail(
            f"{binary} is missing: install Debian's postgresql-15 (the replica tests need it)"
        )
    done = subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=120, **_identity()
    )
    if done.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


class ReplicaPair:
    """A primary with the OLTP database `outreach` and its streaming hot standby."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = Server(root, "primary")
        self.standby = Server(root, "standby")

    def start(self) -> None:
        self.primary.sockets.mkdir()
        identity = _identity()
        if identity:
            owner = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            os.chown(self.primary.sockets, owner.pw_uid, owner.pw_gid)
        run("initdb", "-D", str(self.primary.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C.UTF-8")  # fmt: skip
        self.primary.start()
        admin = sa.create_engine(self.primary.url("postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{DATABASE}"'))
        admin.dispose()
        run("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        assert (self.standby.data / "standby.signal").exists(), "pg_basebackup -R wrote no signal"
        # The settings docs/DEPLOYMENT.md recommends for a rollup replica.
        self.standby.start("hot_standby=on", "hot_standby_feedback=on")

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            server.stop()

    def wait_for_replay(self, timeout: float = 60) -> None:
        """Until the standby has replayed everything the primary has written so far.

        The insert position, not the flushed one: a commit that wrote no other WAL is flushed
        lazily, and must count too.
        """
        primary = sa.create_engine(self.primary.url("postgres"))
        standby = sa.create_engine(self.standby.url("postgres"))
        try:
            with primary.connect() as conn:
                target = conn.execute(
                    sa.text("SELECT pg_current_wal_insert_lsn()::text")
                ).scalar_one()
            deadline = time.monotonic() + timeout
            while True:
                with standby.connect() as conn:
                    caught_up = conn.execute(
                        sa.text("SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)"),
                        {"t": target},
                    ).scalar_one()
                if caught_up:
                    return
                assert time.monotonic() < deadline, f"standby did not replay up to {target}"
                time.sleep(0.2)
        finally:
            primary.dispose()
            standby.dispose()


@pytest.fixture(scope="module")
def replica_pair() -> Iterator[ReplicaPair]:
    """A running primary and hot standby for the module's tests; both stopped at the end.

    In the system's temporary folder (not pytest's, whose permissions a concurrent session may
    reset), owned by the server's user.
    """
    root = Path(tempfile.mkdtemp(prefix="analytics-pipeline-replica-"))
    pair = ReplicaPair(root)
    try:
        pair.start()
        yield pair
    finally:
        try:
            pair.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)
