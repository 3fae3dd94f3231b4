"""The embedded PostgreSQL wrapper's lifecycle.

Why: the README path depends on it, and its failure modes are leaks: a second server started on
the same data, or a server left running after its process was killed or terminated.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from analytics_pipeline.embedded.server import EmbeddedPostgres, wait_until_stopped

SERVE = textwrap.dedent("""
    import sys, time
    from analytics_pipeline.embedded.server import EmbeddedPostgres
    from analytics_pipeline.embedded.signals import install_sigterm_handler
    install_sigterm_handler()
    with EmbeddedPostgres(sys.argv[1]).running() as server:
        print(server.port, flush=True)
        time.sleep(120)
""")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    # Created once: initdb is the slow part, and every test below re-uses the same data folder.
    path = tmp_path_factory.mktemp("embedded")
    yield path
    EmbeddedPostgres(path).force_stop()


def _serve(home: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(home)], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())
    return proc, port


def _query(server: EmbeddedPostgres) -> int:
    engine = sa.create_engine(server.url())
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT 41 + 1")).scalar()
    engine.dispose()
    return value


def test_start_connect_stop(home):
    server = EmbeddedPostgres(home)
    with server.running():
        assert server.owned
        assert _query(server) == 42
        assert (home / "password").stat().st_mode & 0o777 == 0o600
    assert not server.is_running()


def test_second_process_attaches_instead_of_starting_another(home):
    owner, port = _serve(home)
    try:
        guest = EmbeddedPostgres(home)
        guest.start()
        assert guest.port == port and not guest.owned
        assert _query(guest) == 42
        guest.stop()  # a guest leaves the owner's server alone
        assert guest.is_running()
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(timeout=30)
    # SIGTERM on the owner stops the server on its way out.
    assert owner.returncode == 128 + signal.SIGTERM
    assert wait_until_stopped(EmbeddedPostgres(home))


def test_server_left_by_a_killed_owner_is_adopted_and_stopped(home):
    owner, port = _serve(home)
    owner.kill()  # SIGKILL: no chance to clean up
    owner.wait(timeout=10)
    assert EmbeddedPostgres(home).is_running()
    adopter = EmbeddedPostgres(home)
    adopter.start()
    assert adopter.owned and adopter.port == port
    adopter.stop()
    assert not adopter.is_running()


def test_url_before_start_is_a_clear_error(tmp_path):
    from analytics_pipeline.errors import EmbeddedPostgresError

    with pytest.raises(EmbeddedPostgresError, match="not started"):
        EmbeddedPostgres(tmp_path).url()


def test_only_loopback_and_password_auth(home):
    server = EmbeddedPostgres(home)
    with server.running():
        engine = sa.create_engine(server.url())
        with engine.connect() as conn:
            listen = conn.execute(sa.text("SHOW listen_addresses")).scalar()
            sockets = conn.execute(sa.text("SHOW unix_socket_directories")).scalar()
        engine.dispose()
        wrong = sa.make_url(server.url()).set(password="wrong")
        bad = sa.create_engine(wrong)
        with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
            bad.connect()
        bad.dispose()
    assert listen == "127.0.0.1"
    assert sockets == ""
