"""Errors an operator meets: one clear line and the fix, never a traceback or a pointless retry.

Why (issue 11): a bad URL was retried for minutes, an unreachable database printed a
~120-line traceback, a date before the partitions' start surfaced as Dagster's CheckError,
messages showed end-exclusive ranges, `demo --tenants 0` was refused only after the slow
start-up, and the tenant sensor's cursor kept every refused id verbatim.
"""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pytest
import sqlalchemy as sa

from analytics_pipeline.automation import sensors
from analytics_pipeline.errors import RollupError
from analytics_pipeline.partitions import TenantDay, TenantWindow
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.rollups.engine import refresh
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.settings import AutomationSettings
from analytics_pipeline_tests.fake_posthog import free_port
from analytics_pipeline_tests.testbed import cli_env, make_oltp, run_cli

DAY = dt.date(2026, 3, 20)


def _refresh_error(oltp_url: str, olap_url: str) -> RollupError:
    oltp, olap = OltpDatabase(url=oltp_url), OlapDatabase(url=olap_url)
    try:
        with pytest.raises(RollupError) as info:
            refresh(CAMPAIGN_ANALYTICS, [TenantDay("tenant-001", DAY)], oltp=oltp, olap=olap)
    finally:
        oltp.dispose()
        olap.dispose()
    return info.value


@pytest.mark.parametrize(
    ("change", "fix"),
    [
        ({"database": "ap_no_such_database"}, "the database does not exist"),
        ({"username": "ap_no_such_role"}, "the role may not log in"),
    ],
)
def test_a_wrong_database_or_role_fails_at_once_naming_the_fix(shared_url, change, fix):
    """Refreshing into a database that does not exist (or as a role that does not) is not
    transient: the asset must fail now rather than wait 5 + 10 + 20 s for the same answer."""
    bad = sa.make_url(shared_url).set(**change).render_as_string(hide_password=False)
    error = _refresh_error(shared_url, bad)
    assert error.transient is False
    assert fix in str(error)
    assert "(tenant-001 2026-03-20) failed" in str(error), "one day is shown as one day"


def test_a_server_that_is_not_answering_is_retried(shared_url):
    """Connection refused can heal (the server restarts): that one stays transient."""
    down = sa.make_url(shared_url).set(port=free_port()).render_as_string(hide_password=False)
    error = _refresh_error(shared_url, down)
    assert error.transient is True
    assert "will be retried" in str(error)


def test_windows_are_shown_as_inclusive_ranges():
    one = TenantWindow("tenant-001", dt.date(2026, 11, 1), dt.date(2026, 11, 2))
    month = TenantWindow("tenant-001", dt.date(2026, 11, 1), dt.date(2026, 12, 1))
    assert one.label() == "tenant-001 2026-11-01"
    assert month.label() == "tenant-001 2026-11-01..2026-11-30"


def _unreachable_env(tmp_path):
    port = free_port()  # nothing listens there
    return cli_env(
        tmp_path,
        OLTP_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/outreach",
        DAGSTER_PG_URL=f"postgresql://postgres@127.0.0.1:{port}/dagster",
    )


@pytest.mark.parametrize(
    "command",
    [
        ["migrate"],
        ["generate", "--tenants", "1", "--days", "1"],
        # Checked up front: Dagster's own connection retries would take a minute and log each.
        ["backfill", "--start", "2026-03-01", "--end", "2026-03-01"],
    ],
)
def test_an_unreachable_database_is_one_line_and_exit_2(tmp_path, command):
    out = run_cli(command, _unreachable_env(tmp_path))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("analytics-pipeline: error: cannot use ")
    assert "Connection refused" in lines[0] and "Traceback" not in out.stderr


def test_a_wrong_database_name_on_the_command_line_names_the_fix(tmp_path, shared_url):
    missing = sa.make_url(shared_url).set(database="ap_no_such_database")
    out = run_cli(
        ["migrate"],
        cli_env(
            tmp_path,
            OLTP_DATABASE_URL=missing.render_as_string(hide_password=False),
            DAGSTER_PG_URL=shared_url,
        ),
    )
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "the database does not exist: fix the database name in the URL" in out.stderr


def test_demo_refuses_bad_sizes_and_dates_before_starting_anything(tmp_path):
    """Refused before the embedded server is even created (it would take most of a minute on
    a busy machine): the state folder stays empty."""
    zero = run_cli(["demo", "--tenants", "0"], cli_env(tmp_path))
    assert zero.returncode == 2
    assert "tenants=0 is out of range" in zero.stderr
    future = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=3)).isoformat()
    late = run_cli(["demo", "--days", "3", "--end-date", future], cli_env(tmp_path))
    assert late.returncode == 2
    assert len(late.stderr.strip().splitlines()) == 1, late.stderr
    assert f"ends on {future}, after the last partition" in late.stderr
    assert "CheckError" not in late.stderr
    # (An early --end-date is no error: the date dimension starts where the demo's data does.)
    assert not any(tmp_path.iterdir()), "nothing was started or recorded"


def test_the_tenant_sensor_cursor_stays_bounded_however_many_ids_are_refused(databases):
    """Thousands of bad ids in OLTP: each is logged once, the cursor holds none verbatim and
    keeps a bounded number of short hashes."""
    url = databases.create("bad_ids")
    make_oltp(url, size=None)
    n = sensors.ReportedIds.MAX_REPORTED + 500
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO tenants (id, name, status) SELECT 'bad|' || i || repeat('x', 40), "
                "'Bad', 'active' FROM generate_series(1, :n) AS i"
            ),
            {"n": n},
        )
    engine.dispose()
    instance = dg.DagsterInstance.ephemeral()
    oltp = OltpDatabase(url=url)
    with dg.build_sensor_context(instance=instance, resources={"oltp": oltp}) as ctx:
        first = sensors.build_tenant_sensor(AutomationSettings())(ctx)
    cursor = json.loads(first.cursor)
    assert set(cursor) == {"reported_invalid_sha256"}
    assert len(cursor["reported_invalid_sha256"]) == sensors.ReportedIds.MAX_REPORTED
    assert "bad|" not in first.cursor
    assert len(first.cursor) < 40 * sensors.ReportedIds.MAX_REPORTED
    # The ids the cursor remembers are not reported again: exactly the cap's worth of them.
    remembered = sensors.ReportedIds.from_cursor(first.cursor)
    known = [f"bad|{i}" + "x" * 40 for i in range(1, n + 1)]
    assert sum(t in remembered for t in known) == sensors.ReportedIds.MAX_REPORTED
    oltp.dispose()


@pytest.mark.parametrize("bad", ["0", "-2", "two"])
def test_a_bad_number_of_backfill_workers_is_refused_before_anything_starts(tmp_path, bad):
    out = run_cli(
        ["backfill", "--start", "2026-03-01", "--end", "2026-03-01", "--workers", bad],
        cli_env(tmp_path),
    )
    assert out.returncode == 2, out.stderr
    assert f"argument --workers: {bad!r} is not a number of worker processes" in out.stderr
    assert "whole number >= 1" in out.stderr
    assert not any(tmp_path.iterdir()), "nothing was started or recorded"
