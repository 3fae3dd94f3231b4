"""Every environment variable the project reads, declared once.

The settings object (settings/model.py) parses them; docs/OPERATIONS.md's table is rendered from
this list (settings/docs.py; test_settings.py keeps the two equal). A variable that another
reader takes itself (Dagster, or event tracking's TrackingConfig) is declared here too, marked by
`reader`, so that the table is complete and a bad value is still refused when the Definitions are
built.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from analytics_pipeline.settings.urls import PSYCOPG2, URL_FORM, database_url
from analytics_pipeline.settings.variable import (
    DAGSTER,
    TRACKING,
    Variable,
    choice,
    iso_date,
    optional_text,
    path,
    seconds,
    text,
    web_url,
    whole_number,
)

# Values of the choice variables, named where code compares against them.
ENVIRONMENTS = ("development", "test", "staging", "production")
PRODUCTION = "production"
MULTIPROCESS = "multiprocess"
CELERY = "celery"
REDACTION_STRATEGIES = ("mask", "hash", "drop")


OLTP_URL = Variable[sa.URL | None](
    "OLTP_DATABASE_URL",
    None,
    database_url("OLTP_DATABASE_URL"),
    URL_FORM,
    "embedded server, database `outreach`, role `analytics_reader`",
    "reading the product's tables (a role that cannot write them: below)",
)
OLAP_URL = Variable[sa.URL | None](
    "OLAP_DATABASE_URL",
    None,
    database_url("OLAP_DATABASE_URL"),
    URL_FORM,
    "`OLTP_DATABASE_URL` (embedded default: role `analytics_writer`)",
    "the `analytics` schema",
)
DAGSTER_PG_URL = Variable[sa.URL | None](
    "DAGSTER_PG_URL",
    None,
    database_url("DAGSTER_PG_URL", PSYCOPG2),
    URL_FORM,
    "embedded server, database `dagster`",
    "Dagster runs, events, schedules (`dagster.yaml`)",
)
HOME = Variable[Path | None](
    "ANALYTICS_PIPELINE_HOME",
    None,
    path,
    "a folder path",
    "`./.analytics_pipeline`",
    "embedded data folder, Dagster home",
)
PARTITIONS_START = Variable[dt.date | None](
    "ANALYTICS_PARTITIONS_START",
    None,
    iso_date,
    "a date YYYY-MM-DD (the first day partitions exist for)",
    "where the data starts (below)",
    "first date partition; set it once per production deployment",
)
SOURCE_OBSERVE_SECONDS = Variable[int](
    "ANALYTICS_SOURCE_OBSERVE_SECONDS",
    300,
    whole_number(1),
    "a whole number of seconds >= 1",
    "`300`",
    "source observation sensor: seconds between observations of the OLTP tables",
)
GIT_URL = Variable[str | None](
    "ANALYTICS_GIT_URL",
    None,
    web_url,
    "an http(s) URL of the repository, e.g. https://github.com/org/repo",
    "unset",
    "code references link to this repository instead of local files",
)
GIT_BRANCH = Variable[str](
    "ANALYTICS_GIT_BRANCH",
    "main",
    text,
    "a branch name",
    "`main`",
    "the branch of `ANALYTICS_GIT_URL` the code references link to",
)
DAGSTER_HOME = Variable[str | None](
    "DAGSTER_HOME",
    None,
    optional_text,
    "a folder path",
    "`$ANALYTICS_PIPELINE_HOME/dagster_home` when started by `analytics-pipeline`",
    "Dagster's local files and its copy of `dagster.yaml`",
    reader=DAGSTER,
)
EVENT_BATCH_SIZE = Variable[int | None](
    "DAGSTER_EVENT_BATCH_SIZE",
    None,
    whole_number(1),
    "a whole number >= 1",
    "`1000` when started by `analytics-pipeline`",
    "batches Dagster's event writes",
    reader=DAGSTER,
)
NEW_TENANTS_PER_TICK = Variable[int](
    "ANALYTICS_NEW_TENANTS_PER_TICK",
    25,
    whole_number(1),
    "a whole number >= 1",
    "`25`",
    "tenant sensor: new tenants registered per tick",
)
LATE_DATA_LAG_SECONDS = Variable[float](
    "ANALYTICS_LATE_DATA_LAG_SECONDS",
    10.0,
    seconds(0),
    "a number of seconds >= 0, e.g. 10 or 2.5",
    "`10`",
    "late-data sensor: how far its watermark trails the database clock",
)
LATE_DATA_MAX_RUNS = Variable[int](
    "ANALYTICS_LATE_DATA_MAX_RUNS",
    10,
    whole_number(1),
    "a whole number >= 1",
    "`10`",
    "late-data sensor: range runs a tick above which neighbouring ones are merged (within "
    "the waste bound; exact runs come on top)",
)
TENANTS_PER_RUN = Variable[int](
    "ANALYTICS_TENANTS_PER_RUN",
    250,
    whole_number(1),
    "a whole number >= 1",
    "`250`",
    "schedules: tenants per range run",
)
ENVIRONMENT = Variable[str](
    "ANALYTICS_ENV",
    "development",
    choice(*ENVIRONMENTS),
    f"one of {', '.join(ENVIRONMENTS)}",
    "`development`",
    "event tracking: only `production` sends to PostHog; `production` also refuses an OLTP role "
    "that can write",
)
POSTHOG_API_KEY = Variable[str | None](
    "POSTHOG_API_KEY",
    None,
    optional_text,
    "a PostHog project key",
    "unset",
    "event tracking: PostHog project key (unset: log-only)",
    reader=TRACKING,
    secret=True,
)
POSTHOG_HOST = Variable[str | None](
    "POSTHOG_HOST",
    None,
    web_url,
    "an http(s) URL, e.g. https://eu.i.posthog.com",
    "`https://eu.i.posthog.com`",
    "event tracking: ingestion host",
    reader=TRACKING,
)
OUTBOX_PATH = Variable[Path | None](
    "EVENT_OUTBOX_PATH",
    None,
    path,
    "a file path",
    "`$ANALYTICS_PIPELINE_HOME/event_outbox.sqlite3`",
    "event tracking: undelivered events",
    reader=TRACKING,
)
PSEUDONYM_SALT = Variable[str](
    "ANALYTICS_PSEUDONYM_SALT",
    "",
    text,
    "a secret of at least 16 characters",
    "unset (erasure refuses)",
    "tenant erasure: secret key of the pseudonyms (>= 16 characters; never change it)",
    secret=True,
    strip=False,
)
REDACTION = Variable[str](
    "EVENT_REDACTION",
    "mask",
    choice(*REDACTION_STRATEGIES),
    f"one of {', '.join(REDACTION_STRATEGIES)}",
    "`mask`",
    "event tracking: PII strategy (`mask`, `hash`, `drop`)",
    reader=TRACKING,
)
REDACTION_SALT = Variable[str](
    "EVENT_REDACTION_SALT",
    "",
    text,
    "a random secret of 16+ characters, the same on every host",
    "empty",
    "event tracking: the salt of hashed values (required in production)",
    reader=TRACKING,
    secret=True,
    strip=False,
)
EXECUTOR = Variable[str](
    "ANALYTICS_EXECUTOR",
    MULTIPROCESS,
    choice(MULTIPROCESS, CELERY),
    f"{MULTIPROCESS!r} or {CELERY!r}",
    f"`{MULTIPROCESS}`",
    "where a run's steps execute: `multiprocess` (its own host) or `celery` (Celery workers, "
    "[DEPLOYMENT.md](DEPLOYMENT.md))",
)
CELERY_BROKER = Variable[str](
    "ANALYTICS_CELERY_BROKER",
    "pyamqp://guest:guest@127.0.0.1:5672//",
    text,
    "a Celery broker URL",
    "`pyamqp://guest:guest@127.0.0.1:5672//`",
    "the Celery profile: broker (workers read the same)",
)
# rpc:// sends each step's result back over the broker to the run that asked: no extra service.
CELERY_BACKEND = Variable[str](
    "ANALYTICS_CELERY_BACKEND",
    "rpc://",
    text,
    "a Celery result backend URL",
    "`rpc://`",
    "the Celery profile: result backend (workers read the same)",
)
CELERY_QUEUE = Variable[str](
    "ANALYTICS_CELERY_QUEUE",
    "dagster",
    text,
    "a queue name",
    "`dagster`",
    "the Celery profile: queue (workers read the same)",
)
USER = Variable[str](
    "USER",
    "",
    text,
    "a name",
    "the login (set by the shell)",
    "`tenant erase`: the default of `--requested-by`, kept in `analytics.erasures`",
)

# In the order of the docs table.
VARIABLES: tuple[Variable[Any], ...] = (
    OLTP_URL,
    OLAP_URL,
    DAGSTER_PG_URL,
    HOME,
    PARTITIONS_START,
    SOURCE_OBSERVE_SECONDS,
    GIT_URL,
    GIT_BRANCH,
    DAGSTER_HOME,
    EVENT_BATCH_SIZE,
    NEW_TENANTS_PER_TICK,
    LATE_DATA_LAG_SECONDS,
    LATE_DATA_MAX_RUNS,
    TENANTS_PER_RUN,
    ENVIRONMENT,
    POSTHOG_API_KEY,
    POSTHOG_HOST,
    OUTBOX_PATH,
    PSEUDONYM_SALT,
    REDACTION,
    REDACTION_SALT,
    EXECUTOR,
    CELERY_BROKER,
    CELERY_BACKEND,
    CELERY_QUEUE,
    USER,
)
