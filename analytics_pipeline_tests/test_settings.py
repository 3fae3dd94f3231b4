"""Database settings from the environment.

Why: a wrong URL must fail with a message that names the variable and says what to do, and must
never echo the password into logs.
"""

from __future__ import annotations

import pytest

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.settings import DatabaseSettings, normalize_database_url, same_database


def test_olap_defaults_to_oltp_and_drivers_are_chosen():
    s = DatabaseSettings.from_env(
        {
            "OLTP_DATABASE_URL": "postgresql://u:secret@db:5432/app",
            "DAGSTER_PG_URL": "postgres://u:secret@db/dagster",
        }
    )
    assert s.olap_url == s.oltp_url
    assert s.oltp_url.drivername == "postgresql+psycopg"
    assert s.dagster_url.drivername == "postgresql+psycopg2"


def test_missing_oltp_url_says_how_to_fix():
    with pytest.raises(
        ConfigurationError, match=r"OLTP_DATABASE_URL is not set.*analytics-pipeline"
    ):
        DatabaseSettings.from_env({"DAGSTER_PG_URL": "postgresql://db/d"})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("mysql://u:hunter2@db/app", "driver 'mysql'"),
        ("postgresql://u:hunter2@db:5432", "names no database"),
        ("not a url", "not a database URL"),
    ],
)
def test_bad_urls_name_the_setting_and_hide_the_password(raw, message):
    with pytest.raises(ConfigurationError) as err:
        normalize_database_url(raw, setting="OLAP_DATABASE_URL")
    assert "OLAP_DATABASE_URL" in str(err.value)
    assert message in str(err.value)
    assert "hunter2" not in str(err.value)


def test_same_database_ignores_credentials_and_driver():
    a = normalize_database_url("postgresql://a:x@h:5432/db", setting="A")
    b = normalize_database_url("postgresql+psycopg2://b:y@h/db", setting="B")
    c = normalize_database_url("postgresql://a:x@h:5432/other", setting="C")
    assert same_database(a, b)
    assert not same_database(a, c)


def test_resource_rejects_bad_work_mem_and_masks_password():
    with pytest.raises(ValueError, match="work_mem '64 megabytes'"):
        OlapDatabase(url="postgresql://u:pw@h/db", work_mem="64 megabytes")
    assert "pw" not in OlapDatabase(url="postgresql://u:pw@h/db").display_url
