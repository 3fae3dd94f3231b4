"""The README's main command, end to end, in a subprocess as a user runs it.

Why: `analytics-pipeline demo` on the embedded default is the first thing a new user runs; it
must need no database set up by hand, print a summary whose figures reconcile with OLTP, leave
no server running behind it, and refuse to overwrite a database it did not fill.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from analytics_pipeline.embedded.server import EmbeddedPostgres
from analytics_pipeline.rollups.tables import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "analytics_pipeline.cli"]


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "OLTP_DATABASE_URL",
            "OLAP_DATABASE_URL",
            "DAGSTER_PG_URL",
            "DAGSTER_HOME",
            # conftest pins it for in-process tests; commands find it from their data.
            "ANALYTICS_PARTITIONS_START",
        }
    }
    env["ANALYTICS_PIPELINE_HOME"] = str(home)
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_demo_on_embedded_default(tmp_path):
    size = ["--tenants", "2", "--days", "4", "--emails-per-day", "60", "--end-date", "2026-03-31"]
    first = _run(["demo", *size], _env(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "OLTP: loaded" in first.stdout
    # The data's four days and the day after (the data's "today"): the date dimension starts on
    # the first (recorded in the home), so the demo tenants have no partition left missing.
    assert "10 partitions (2 tenants x 5 days, 2026-03-28..2026-04-01)" in first.stdout
    assert (tmp_path / "partitions_start").read_text() == "2026-03-28\n"
    # Progress, as plain lines (stderr is not a terminal): the load per tenant, then the run's
    # materializations (10 partitions x every table), each ending complete.
    assert re.search(r"^OLTP load: 2/2 tenants, [\d,]+ rows, [\d.]+s$", first.stderr, re.M)
    steps = 10 * len(REGISTRY)
    assert re.search(
        rf"^Dagster run: {steps}/{steps} asset partitions, [\d.]+s$", first.stderr, re.M
    )
    assert "matches the" in first.stdout and "DOES NOT MATCH" not in first.stdout
    assert not EmbeddedPostgres(tmp_path / "postgres").is_running()
    # The README's first command prints its summary, not every event the run tracked (the
    # tracker logs each at INFO; Dagster's managed loggers must not push them to the terminal).
    assert "infra_latency" not in first.stdout + first.stderr
    # Again: the same dataset is reused and the same figures come out.
    second = _run(["demo", *size], _env(tmp_path))
    assert second.returncode == 0, second.stderr
    assert "already loaded" in second.stdout
    tail = lambda out: out[out.index("analytics.campaign_analytics: ") :]  # noqa: E731
    assert tail(second.stdout) == tail(first.stdout)


def test_demo_refuses_a_database_it_did_not_fill(tmp_path, databases):
    url = databases.create("foreign")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        from analytics_pipeline.sources.schema import create_oltp_schema

        create_oltp_schema(conn)
        conn.execute(
            sa.text(
                "INSERT INTO tenants (id, name, status) VALUES ('real-customer', 'Real', 'active')"
            )
        )
    out = _run(["generate", "--tenants", "1", "--days", "1"], _env(tmp_path, OLTP_DATABASE_URL=url))
    assert out.returncode == 2
    assert "already holds data that the demo did not load; refusing to overwrite" in out.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM tenants")).scalars().all() == ["real-customer"]
    engine.dispose()


def test_bad_size_is_a_clear_error(tmp_path):
    out = _run(
        ["generate", "--tenants", "0"],
        _env(tmp_path, OLTP_DATABASE_URL="postgresql://x/y", DAGSTER_PG_URL="postgresql://x/z"),
    )
    assert out.returncode == 2
    assert "tenants=0 is out of range" in out.stderr
