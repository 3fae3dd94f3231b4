"""Settings from the environment: the database URLs, and the one settings object.

Why: a wrong URL must fail with a message that names the variable and says what to do, and must
never echo the password into logs.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.resources.database import OlapDatabase
from analytics_pipeline.settings import (
    AutomationSettings,
    DatabaseSettings,
    Settings,
    normalize_database_url,
    same_database,
    tracking_environ,
)
from analytics_pipeline.settings.docs import OPERATIONS, documented_table, variables_table
from analytics_pipeline.settings.registry import VARIABLES


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


# --- The settings object and its registry -------------------------------------------------------
#
# Why: configuration is read once, when the Definitions are built, from one declaration per
# variable; a typo must stop the load with the variable, the value and the form expected (not a
# bare ValueError from int()), and docs/OPERATIONS.md must list exactly what the code reads.

# A bad value of each variable that is a number, a date, a URL or a choice, and what the message
# must show of it (secrets and passwords never appear).
BAD_VALUES = [
    ("ANALYTICS_NEW_TENANTS_PER_TICK", "ten", "'ten'", "a whole number >= 1"),
    ("ANALYTICS_NEW_TENANTS_PER_TICK", "0", "'0'", "a whole number >= 1"),
    ("ANALYTICS_LATE_DATA_LAG_SECONDS", "soon", "'soon'", "a number of seconds >= 0"),
    ("ANALYTICS_LATE_DATA_LAG_SECONDS", "nan", "'nan'", "a number of seconds >= 0"),
    ("ANALYTICS_LATE_DATA_MAX_RUNS", "2.5", "'2.5'", "a whole number >= 1"),
    ("ANALYTICS_TENANTS_PER_RUN", "-250", "'-250'", "a whole number >= 1"),
    ("ANALYTICS_SOURCE_OBSERVE_SECONDS", "5m", "'5m'", "a whole number of seconds >= 1"),
    ("DAGSTER_EVENT_BATCH_SIZE", "lots", "'lots'", "a whole number >= 1"),
    ("ANALYTICS_PARTITIONS_START", "2024-13-01", "'2024-13-01'", "a date YYYY-MM-DD"),
    ("ANALYTICS_PARTITIONS_START", "01/01/2024", "'01/01/2024'", "a date YYYY-MM-DD"),
    ("ANALYTICS_GIT_URL", "github.com/org/repo", "'github.com/org/repo'", "an http(s) URL"),
    ("POSTHOG_HOST", "eu.i.posthog.com", "'eu.i.posthog.com'", "an http(s) URL"),
    ("ANALYTICS_EXECUTOR", "kubernetes", "'kubernetes'", "'multiprocess' or 'celery'"),
    ("ANALYTICS_ENV", "prod", "'prod'", "one of development, test, staging, production"),
    ("EVENT_REDACTION", "blur", "'blur'", "one of mask, hash, drop"),
    (
        "OLTP_DATABASE_URL",
        "mysql://u:hunter2@db/app",
        "'mysql://u:***@db/app'",
        "postgresql://user:password@host:5432/dbname",
    ),
    (
        "OLAP_DATABASE_URL",
        "postgres//u:hunter2@db/app",
        "'postgres//u:***@db/app'",
        "postgresql://user:password@host:5432/dbname",
    ),
]


@pytest.mark.parametrize(("name", "raw", "shown", "form"), BAD_VALUES)
def test_a_bad_value_names_the_variable_its_value_and_the_form(name, raw, shown, form):
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env({name: raw})
    message = str(err.value)
    assert name in message and shown in message and form in message, message
    assert "hunter2" not in message


def test_a_secret_is_never_echoed():
    variable = next(v for v in VARIABLES if v.name == "EVENT_REDACTION_SALT")
    assert "s3cret" not in variable.refusal("s3cret")
    assert all(v.secret for v in VARIABLES if "SALT" in v.name or "KEY" in v.name)


def test_unset_and_blank_are_the_defaults_and_values_are_typed():
    defaults = Settings.from_env({"ANALYTICS_TENANTS_PER_RUN": "  "})
    assert defaults.automation == AutomationSettings()
    assert (defaults.automation.tenants_per_run, defaults.automation.late_data_lag_seconds) == (
        250,
        10.0,
    )
    s = Settings.from_env(
        {
            "ANALYTICS_LATE_DATA_LAG_SECONDS": "2.5",
            "ANALYTICS_PARTITIONS_START": "2025-06-01",
            "ANALYTICS_EXECUTOR": " Celery ",
            "ANALYTICS_PSEUDONYM_SALT": "not-in-the-repr-0123456789",
        }
    )
    assert s.automation.late_data_lag_seconds == 2.5
    assert s.partitions_start == dt.date(2025, 6, 1)
    assert s.executor.profile == "celery"
    assert "not-in-the-repr" not in repr(s)
    # A key is taken as written: a salt that lost a space would change every pseudonym.
    spaced = Settings.from_env({"ANALYTICS_PSEUDONYM_SALT": " salt-0123456789 "})
    assert spaced.pseudonym_salt == " salt-0123456789 "
    # OLAP_DATABASE_URL defaults to the OLTP one: the resource reads whichever is set.
    assert s.olap_url_variable == "OLTP_DATABASE_URL"
    with_olap = Settings.from_env({"OLAP_DATABASE_URL": "postgresql://h/olap"})
    assert with_olap.olap_url_variable == "OLAP_DATABASE_URL"


def test_the_sensors_and_schedules_are_built_from_the_settings():
    """The tuning reaches what Dagster runs (interval, names): nothing is read at import."""
    from analytics_pipeline.settings import registry
    from analytics_pipeline.wiring import build_definitions

    defs = build_definitions(Settings.from_env({"ANALYTICS_SOURCE_OBSERVE_SECONDS": "45"}))
    intervals = {s.name: s.minimum_interval_seconds for s in defs.sensors}
    assert intervals == {
        "tenant_sensor": 60,
        "late_data_sensor": 15,
        "run_failure_sensor": 30,
        "source_observation_sensor": 45,
    }
    assert [s.name for s in defs.schedules] == [
        "daily_refresh",
        "intraday_refresh",
        "retention_schedule",
    ]
    default = build_definitions(Settings.from_env({}))
    observe = {s.name: s.minimum_interval_seconds for s in default.sensors}
    assert observe["source_observation_sensor"] == registry.SOURCE_OBSERVE_SECONDS.default


def test_the_docs_table_is_the_registry():
    """docs/OPERATIONS.md lists every variable, as declared (regenerate it with
    `python -m analytics_pipeline.settings.docs`)."""
    written = documented_table(OPERATIONS.read_text())
    assert written == variables_table(), (
        "docs/OPERATIONS.md's variables table differs from analytics_pipeline/settings/"
        "registry.py: run `python -m analytics_pipeline.settings.docs`"
    )
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    for name in names:
        assert f"| `{name}` |" in written


def test_the_registry_declares_what_event_tracking_reads():
    """TrackingConfig parses its variables itself: they are declared here all the same (docs,
    early refusal), with the same choices."""
    from analytics_pipeline.settings import registry
    from analytics_pipeline.tracking import config
    from analytics_pipeline.tracking.redaction import STRATEGIES

    names = {v.name for v in VARIABLES}
    tracked = {getattr(config, n) for n in dir(config) if n.endswith("_ENV")}
    assert tracked <= names, tracked - names
    assert set(tracking_environ({n: "x" for n in tracked} | {"UNRELATED": "y"})) == tracked
    assert registry.ENVIRONMENTS == config.ENVIRONMENTS
    assert set(registry.REDACTION_STRATEGIES) == set(STRATEGIES)


ROOT = Path(__file__).resolve().parents[1]
# Reads of os.environ outside settings/ that are not settings: a child's hand-over and the
# environment passed whole to a child process.
HANDOVERS = {
    ("analytics_pipeline/tracking/sender_child.py", "pop"),  # the sender child's config
    ("analytics_pipeline/tracking/sender_process.py", "**"),  # the child's environment
}


def _environ_reads(source: str, rel: str) -> set[tuple[str, str]]:
    """How the module reads os.environ: ("get:NAME"), ("subscript:NAME"), ("pop"), ("**")...;
    writes (assignment, setdefault, which exports for children) are not reads."""
    tree = ast.parse(source)
    reads: set[tuple[str, str]] = set()

    def is_environ(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "environ"
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
        )

    def name_of(node: ast.AST) -> str:
        if isinstance(node, ast.Constant):
            return str(node.value)
        if isinstance(node, ast.Name):
            return f"${node.id}"
        return "?"

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and is_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                reads.add((rel, f"subscript:{name_of(node.slice)}"))
        elif isinstance(node, ast.Attribute) and is_environ(node.value):
            if node.attr != "setdefault":
                reads.add((rel, node.attr if node.attr != "get" else "get"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if is_environ(node.func.value) and node.func.attr == "get" and node.args:
                reads.discard((rel, "get"))
                reads.add((rel, f"get:{name_of(node.args[0])}"))
        elif isinstance(node, ast.Dict) and any(is_environ(v) for v in node.values):
            reads.add((rel, "**"))
        elif isinstance(node, ast.Name) and node.id == "getenv":
            reads.add((rel, "getenv"))
    for node in ast.walk(tree):  # `os.environ` passed as a value (not .get/[...]/**)
        if isinstance(node, ast.Call):
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if is_environ(arg):
                    reads.add((rel, "whole"))
        if isinstance(node, ast.IfExp) and (is_environ(node.body) or is_environ(node.orelse)):
            reads.add((rel, "whole"))
    # `os.environ.get(...)` also matched the plain attribute: keep only the precise entry.
    if any(r.startswith("get:") for _, r in reads):
        reads.discard((rel, "get"))
    return reads


def test_only_the_settings_read_the_environment():
    """Every read of os.environ in the package goes through settings/ (Variable.read/raw)."""
    package = ROOT / "analytics_pipeline"
    reads: set[tuple[str, str]] = set()
    for path in sorted(package.rglob("*.py")):
        if (package / "settings") in path.parents:
            continue
        reads |= _environ_reads(path.read_text(), path.relative_to(ROOT).as_posix())
    assert reads - HANDOVERS == set()
    # The list stays true: an entry that no longer reads must be removed.
    assert reads >= HANDOVERS


def test_the_detector_sees_reads():
    """The check above can fail: each way of reading is found, writes are not."""
    source = (
        "import os\n"
        'N = int(os.environ.get("ANALYTICS_N", "1"))\n'
        'H = os.environ["HOME"]\n'
        "env = {**os.environ}\n"
        "def f(e=None):\n"
        "    return os.environ if e is None else e\n"
        'os.environ["OUT"] = "1"\n'
        'os.environ.setdefault("OUT2", "1")\n'
    )
    assert _environ_reads(source, "m.py") == {
        ("m.py", "get:ANALYTICS_N"),
        ("m.py", "subscript:HOME"),
        ("m.py", "**"),
        ("m.py", "whole"),
    }


# One process for all the cases: each re-imports `analytics_pipeline.definitions` (the module
# Dagster loads) with one bad value set, and prints what the load raised.
_LOAD_EACH = """
import importlib, json, os, sys
cases = json.loads(sys.argv[1])
out = []
for name, raw in cases:
    os.environ[name] = raw
    try:
        if "analytics_pipeline.definitions" in sys.modules:
            importlib.reload(sys.modules["analytics_pipeline.definitions"])
        else:
            importlib.import_module("analytics_pipeline.definitions")
        out.append(["loaded", ""])
    except Exception as exc:
        out.append([type(exc).__name__, str(exc)])
    del os.environ[name]
print(json.dumps(out))
"""


def _python_result(script: str, home: Path, extra: dict[str, str], *args: str) -> Any:
    """Run `script` in a fresh interpreter with none of the declared variables set but `extra`
    (and the state home `home`); the JSON its last line prints."""
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARIABLES}}
    env |= {"ANALYTICS_PIPELINE_HOME": str(home), **extra}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_loading_the_definitions_refuses_each_bad_value(tmp_path):
    """In a real process, as Dagster's code server loads the module."""
    cases = [(name, raw) for name, raw, _, _ in BAD_VALUES]
    outcomes = _python_result(_LOAD_EACH, tmp_path, {}, json.dumps(cases))
    for (name, _, shown, form), (kind, message) in zip(BAD_VALUES, outcomes, strict=True):
        assert kind == "ConfigurationError", (name, kind, message)
        assert name in message and shown in message and form in message, message


def test_dagster_definitions_validate_names_the_bad_setting(databases, tmp_path):
    """Dagster's own command: the load fails, and its output says which variable to fix."""
    env = {k: v for k, v in os.environ.items() if k not in {v.name for v in VARIABLES}}
    env |= {
        "DAGSTER_PG_URL": databases.create_for_dagster("settings_validate"),
        "ANALYTICS_PIPELINE_HOME": str(tmp_path),
        "ANALYTICS_TENANTS_PER_RUN": "two hundred",
    }
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "ANALYTICS_TENANTS_PER_RUN='two hundred'" in output, output
    assert "a whole number >= 1" in output


# Imports every module of the package with bad values set, then builds the Definitions twice.
_IMPORT_THEN_BUILD = """
import datetime as dt, importlib, json, os, pkgutil, sys
import analytics_pipeline
names = sorted(
    m.name for m in pkgutil.walk_packages(analytics_pipeline.__path__, "analytics_pipeline.")
    if m.name not in {"analytics_pipeline.definitions", "analytics_pipeline.cli.__main__"}
)
for name in names:
    importlib.import_module(name)
from analytics_pipeline.settings import Settings
from analytics_pipeline.wiring import build_definitions
try:
    build_definitions(Settings.from_env())
    refused = ""
except Exception as exc:
    refused = type(exc).__name__ + ": " + str(exc)
os.environ.pop("ANALYTICS_TENANTS_PER_RUN")
os.environ["ANALYTICS_PARTITIONS_START"] = "2025-03-04"
defs = build_definitions(Settings.from_env())
olap = [k for k in defs.resolve_all_asset_keys() if k.path[0] == "analytics"]
starts = {
    k.to_user_string(): defs.resolve_assets_def(k)
    .partitions_def.get_partitions_def_for_dimension("date")
    .start.date()
    .isoformat()
    for k in olap
}
print(json.dumps({"modules": len(names), "refused": refused, "starts": starts}))
"""


def test_importing_reads_no_setting_and_building_reads_them_all(tmp_path):
    """Settings are resolved when the Definitions are built, never at import (issue: structure):
    with a bad start date and a bad count set, every module of the package imports; building
    refuses them; with a good start date, every OLAP asset's date dimension starts there."""
    outcome = _python_result(
        _IMPORT_THEN_BUILD,
        tmp_path,
        {
            "ANALYTICS_PARTITIONS_START": "the first of March",
            "ANALYTICS_TENANTS_PER_RUN": "two hundred",
        },
    )
    assert outcome["modules"] > 50
    assert outcome["refused"].startswith("ConfigurationError: ANALYTICS_PARTITIONS_START")
    assert "'the first of March'" in outcome["refused"]
    assert outcome["starts"] and set(outcome["starts"].values()) == {"2025-03-04"}
