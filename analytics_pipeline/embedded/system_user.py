"""Running the embedded server as root: PostgreSQL refuses to, so it runs as a system user.

The user `embedded_postgres` is created if missing (system account, no home, no login shell), and
it is given only what it needs: ownership of the data folder (by the server module) and the
search bit on the folders it must pass through.
"""

from __future__ import annotations

import logging
import pwd
import stat
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER = "embedded_postgres"


def ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )


def grant_traversal(path: Path) -> None:
    """Add only the search bit (o+x), never read, to the folders on the way to `path`."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
            log.warning("granted o+x on %s so the embedded server's user can reach it", folder)
