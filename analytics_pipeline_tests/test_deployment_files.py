"""The production deployment's files (deploy/), checked without Docker or Kubernetes.

Why: Docker cannot run here, and a compose file, an image or Helm values that only fail when
someone applies them are a broken deliverable. So: the compose file against the Compose
Specification's JSON schema, pinned image references, every environment variable the code reads
provided to every service that runs the code, a non-root and fully pinned image, a workspace
that points at the code server, the deployment's dagster.yaml loaded as a real instance, and
Helm values that keep the project's guarantees (K8sRunLauncher, external PostgreSQL, limits).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import re
import shlex
from pathlib import Path

import dagster as dg
import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PIPELINE_SERVICES = ("user-code", "webserver", "daemon", "celery-worker")
# Read by the code, but never a deployment's setting.
INTERNAL_VARIABLES = {
    "ANALYTICS_TRACKING_SENDER": "the tracker hands its settings to its sender child with it",
    "DAGSTER_EVENT_BATCH_SIZE": "the instance's event storage sets it (dagster.yaml)",
    "USER": "only the default of `tenant erase --requested-by`, a command run by a person",
}
# Read by Dagster or the official images, not by our code.
THIRD_PARTY_VARIABLES = {"DAGSTER_HOME"}
EXACT_TAG = re.compile(r"^[\w./-]+:(\d+\.\d+(\.\d+)?)([\w.-]*)$|@sha256:[0-9a-f]{64}$")


def _yaml(name: str) -> dict:
    return yaml.safe_load((DEPLOY / name).read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return _yaml("docker-compose.yaml")


def variables_the_code_reads() -> set[str]:
    """Every environment variable the settings registry declares (but those only Dagster reads),
    any other named in the package's source, and those of the dagster.yaml files."""
    from analytics_pipeline.settings.registry import VARIABLES
    from analytics_pipeline.settings.variable import DAGSTER

    declared = {v.name for v in VARIABLES if v.reader != DAGSTER}
    pattern = re.compile(
        r"(?:environ(?:\.get|\.setdefault)?\(|environ\[|getenv\(|EnvVar\(|_ENV = )"
        r"\"([A-Z][A-Z0-9_]+)\""
    )
    found = declared | {
        m.group(1)
        for path in (ROOT / "analytics_pipeline").rglob("*.py")
        for m in pattern.finditer(path.read_text())
    }
    for config in (ROOT / "dagster.yaml", DEPLOY / "dagster.yaml"):
        found |= set(re.findall(r"env: ([A-Z][A-Z0-9_]+)", config.read_text()))
    return found


def test_compose_file_follows_the_compose_specification(compose):
    schema_file = importlib.resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(
        "compose-spec.json"
    )
    jsonschema.validate(compose, json.loads(schema_file.read_text()))
    services = compose["services"]
    assert set(services) == {"dagster-postgres", "rabbitmq", *PIPELINE_SERVICES}
    commands = {name: " ".join(services[name]["command"]) for name in PIPELINE_SERVICES}
    assert commands["user-code"].startswith("dagster code-server start")
    assert "-m analytics_pipeline.definitions" in commands["user-code"]
    assert commands["webserver"].startswith("dagster-webserver")
    assert commands["daemon"].startswith("dagster-daemon run")
    assert commands["celery-worker"].startswith(
        "celery -A analytics_pipeline.deployment.celery_app worker"
    )
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/app/workspace.yaml" in commands[name]
        assert services[name]["depends_on"]["user-code"]["condition"] == "service_healthy"


def test_images_are_pinned_and_the_pipeline_runs_the_projects_image(compose):
    services = compose["services"]
    for name, service in services.items():
        assert EXACT_TAG.search(service["image"]), f"{name}: {service['image']} is not pinned"
    images = {services[n]["image"] for n in PIPELINE_SERVICES}
    assert images == {services["user-code"]["image"]}, "one image for every role"
    build = services["user-code"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_every_variable_the_code_reads_is_provided_to_every_pipeline_service(compose):
    read = variables_the_code_reads() - set(INTERNAL_VARIABLES)
    assert {"OLTP_DATABASE_URL", "DAGSTER_PG_URL", "ANALYTICS_EXECUTOR"} <= read
    for name in PIPELINE_SERVICES:
        provided = set(compose["services"][name]["environment"])
        assert read <= provided, f"{name} lacks {sorted(read - provided)}"
        unknown = provided - read - THIRD_PARTY_VARIABLES
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    env = compose["services"]["user-code"]["environment"]
    assert env["ANALYTICS_EXECUTOR"] == "celery"
    assert env["DAGSTER_PG_URL"].startswith("postgresql+psycopg2://")
    assert "@dagster-postgres:5432/" in env["DAGSTER_PG_URL"]
    assert "@rabbitmq:5672" in env["ANALYTICS_CELERY_BROKER"]
    worker = compose["services"]["celery-worker"]["command"]
    assert worker[worker.index("-Q") + 1] == env["ANALYTICS_CELERY_QUEUE"]


def _dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def _lock():
    spec = importlib.util.spec_from_file_location("deploy_lock", DEPLOY / "lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_image_is_non_root_and_every_dependency_is_pinned():
    instructions = _dockerfile()
    (base,) = [arg for op, arg in instructions if op == "FROM"]
    assert EXACT_TAG.search(base), f"FROM {base} is not an exact release or digest"
    users = [arg for op, arg in instructions if op == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]}: numeric and not root"
    for op, arg in instructions:
        if op == "COPY":
            sources = [a for a in shlex.split(arg) if not a.startswith("--")][:-1]
            assert all((ROOT / s).exists() for s in sources), f"COPY {arg}: missing source"
    installs = [arg for op, arg in instructions if op == "RUN" and "pip install" in arg]
    assert installs and all("--no-deps" in arg for arg in installs), installs
    pinned = {}
    for line in (DEPLOY / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line} is not pinned"
            pinned[name] = version
    # Nothing of analytics_pipeline[celery]'s closure is left to the resolver.
    missing = set(_lock().closure()) - set(pinned)
    assert not missing, f"deploy/requirements.txt lacks {sorted(missing)}: run deploy/lock.py"
    assert pinned["dagster"] == "1.13.27" and pinned["dagster-celery"] == "0.29.27"


def test_the_workspace_points_at_the_code_server(compose):
    (entry,) = _yaml("workspace.yaml")["load_from"]
    server = entry["grpc_server"]
    command = compose["services"][server["host"]]["command"]
    assert command[command.index("-p") + 1] == str(server["port"])
    assert command[command.index("--location-name") + 1] == server["location_name"]
    copies = [arg.split()[-2:] for op, arg in _dockerfile() if op == "COPY"]
    assert ["deploy/workspace.yaml", "/opt/dagster/app/workspace.yaml"] in copies


def test_the_deployments_dagster_yaml_is_a_valid_instance(databases, tmp_path, monkeypatch):
    """Loaded by Dagster itself on a real PostgreSQL; same limits as the project's own."""
    monkeypatch.setenv("DAGSTER_PG_URL", databases.create_for_dagster("deploy_instance"))
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.get_runs() == []
    project = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert _yaml("dagster.yaml")["concurrency"] == project["concurrency"]


def test_helm_values_run_on_kubernetes_with_an_external_instance_database():
    values = _yaml("helm/values.yaml")
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and values["postgresql"]["postgresqlHost"]
    assert values["generatePostgresqlPasswordSecret"] is False
    (code,) = values["dagster-user-deployments"]["deployments"]
    assert code["image"]["tag"] not in ("latest", "", None)
    assert code["codeServerArgs"][:2] == ["-m", "analytics_pipeline.definitions"]
    uid = [a for op, a in _dockerfile() if op == "USER"][-1].split(":")[0]
    assert code["podSecurityContext"]["runAsUser"] == int(uid)
    assert code["podSecurityContext"]["runAsNonRoot"] is True
    secrets = {s["name"] for s in code["envSecrets"]}
    launched = {s["name"] for s in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]}
    assert secrets <= launched, "run pods need the code's database URLs too"
    queue = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = yaml.safe_load((ROOT / "dagster.yaml").read_text())["concurrency"]["runs"]
    assert queue["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
