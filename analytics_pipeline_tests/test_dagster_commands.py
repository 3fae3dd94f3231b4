"""Dagster's own commands, in a fresh clone of the project, with nothing set.

Why: a user who knows Dagster runs `dg check defs` or `dagster definitions validate` in the
project root before anything else. Both copy dagster.yaml into a temporary home, so the
instance's database must resolve there too: with no DAGSTER_* / OLTP / OLAP variable set, the
storages fall back to the embedded PostgreSQL (analytics_pipeline/instance/), which the command
starts and stops. A setting that cannot work must give one line that says what to do, not a
traceback. The clone is of the committed branch (git clone of this checkout), run with this
virtualenv's Python and the clone's own code.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from analytics_pipeline.embedded.server import EmbeddedPostgres

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def clone() -> Iterator[Path]:
    # Not pytest's tmp_path: the embedded server's system user must traverse the folders, and
    # another pytest session may reset the permissions of pytest's root (see conftest.py).
    parent = Path(tempfile.mkdtemp(prefix="analytics-pipeline-clone-"))
    try:
        subprocess.run(
            ["git", "clone", "--quiet", str(ROOT), str(parent / "project")],
            check=True,
            timeout=120,
        )
        yield parent / "project"
    finally:
        server = EmbeddedPostgres(parent / "project" / ".analytics_pipeline" / "postgres")
        leaked = server.is_running()
        if leaked:
            server.force_stop()
        shutil.rmtree(parent, ignore_errors=True)
        assert not leaked, "a Dagster command left the embedded server running"


def _clean_env(clone: Path, **extra: str) -> dict[str, str]:
    """The environment of a new user: none of the project's or Dagster's settings."""
    prefixes = ("DAGSTER_", "OLTP_", "OLAP_", "ANALYTICS_", "POSTHOG_", "EVENT_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    # The clone's code, not this checkout's editable install.
    env["PYTHONPATH"] = str(clone)
    env.update(extra)
    return env


def _run(clone: Path, *cmd: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:]],
        cwd=clone,
        env=_clean_env(clone, **extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_dg_check_defs_on_the_embedded_default(clone: Path):
    done = _run(clone, "dg", "check", "defs")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All definitions loaded successfully" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not EmbeddedPostgres(clone / ".analytics_pipeline" / "postgres").is_running()


def test_dagster_definitions_validate_on_the_embedded_default(clone: Path):
    done = _run(clone, "dagster", "definitions", "validate")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "All code locations passed validation" in output
    assert "DAGSTER_PG_URL" not in output and "Traceback" not in output
    # Its temporary home is gone, and nothing else was left in the clone.
    assert not list(clone.glob(".tmp_dagster_home_*"))
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True)
    assert status.stdout.decode() == "", status.stdout


def test_a_setting_that_cannot_work_is_one_line_that_says_what_to_do(clone: Path):
    done = _run(clone, "dagster", "definitions", "validate", DAGSTER_PG_URL="mysql://db/x")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    ours = [line for line in done.stderr.splitlines() if line.startswith("analytics_pipeline:")]
    assert len(ours) == 1, done.stderr
    assert "DAGSTER_PG_URL uses the driver 'mysql'" in ours[0]
    assert "postgresql://" in ours[0]
