"""Provisioning the embedded cluster: initdb with a generated password, cheap logins, databases.

The data folder is created once (`initdb`, superuser `postgres` with a random password kept in
`<home>/password`, mode 0600; loopback TCP only, no Unix socket); as root it belongs to the
system user, which is granted only traversal (o+x) on the parent folders. The pipeline's roles
are embedded/roles.py.
"""

from __future__ import annotations

import os
import pwd
import secrets
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.cluster import bin_dir, run, run_as
from analytics_pipeline.embedded.roles import set_password
from analytics_pipeline.embedded.system_user import ensure_system_user, grant_traversal
from analytics_pipeline.errors import EmbeddedPostgresError

SUPERUSER = "postgres"
APP_DATABASE = "outreach"
DAGSTER_DATABASE = "dagster"


def ensure_initialized(home: Path, data: Path, password_file: Path) -> bool:
    """initdb unless the data folder exists; True when it was just created."""
    if (data / "PG_VERSION").exists():
        return False
    user = run_as()
    if user is not None:
        ensure_system_user()
        grant_traversal(data.parent)
        grant_traversal(bin_dir())
    data.mkdir(mode=0o700, exist_ok=True)
    password = secrets.token_urlsafe(24)
    password_file.write_text(password)
    password_file.chmod(0o600)
    pwfile = home / "initdb.pw"
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    if user is not None:
        uid = pwd.getpwnam(user).pw_uid
        gid = pwd.getpwnam(user).pw_gid
        os.chown(data, uid, gid)
        os.chown(pwfile, uid, gid)
    try:
        run(
            data,
            "initdb",
            "-D",
            str(data),
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
    with open(data / "postgresql.auto.conf", "a") as conf:
        # Loopback TCP only; no Unix socket, so no socket folder to open to other users.
        conf.write("listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n")
    return True


def read_password(password_file: Path, data: Path) -> str:
    """The superuser's password, or EmbeddedPostgresError saying how to start afresh."""
    try:
        return password_file.read_text().strip()
    except OSError:
        raise EmbeddedPostgresError(
            f"{password_file} is missing, so the embedded server cannot be reached. "
            f"Stop it (`analytics-pipeline embedded stop`) and delete {data} to start "
            "afresh."
        ) from None


def cheapen_connections(admin_url: str, password: str) -> None:
    """Make logins cheap (few PBKDF2 rounds), and re-hash the superuser's password so."""
    # dagster-postgres opens a new connection for every event it stores (NullPool), and a
    # scram-sha-256 login with the default 4096 PBKDF2 rounds costs ~10 ms here against
    # ~3.7 ms with 16: most of a demo run's Dagster time. The rounds only slow down guessing
    # a password from a stolen verifier; ours is 32 random characters (~190 bits), which no
    # number of rounds makes more or less guessable.
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("ALTER SYSTEM SET scram_iterations = 16"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
            conn.execute(sa.text("SET scram_iterations = 16"))
            set_password(conn, SUPERUSER, password)
    finally:
        engine.dispose()


def ensure_databases(admin_url: str) -> None:
    """Create the app's and Dagster's databases where missing."""
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            have = set(conn.execute(sa.text("SELECT datname FROM pg_database")).scalars())
            for name in (APP_DATABASE, DAGSTER_DATABASE):
                if name not in have:
                    conn.execute(sa.text('CREATE DATABASE "' + name + '"'))
    finally:
        engine.dispose()
