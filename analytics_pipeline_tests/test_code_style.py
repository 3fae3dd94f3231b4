"""Lint and format, so the one README test command also keeps the code style checked; and the
tests' own structure (issue 12): helpers in support modules, fixtures in conftest.py."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_lint():
    out = _ruff("check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format():
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


# Modules that still import from conftest.py or another test module; their owners move them to
# testbed.py / dev_server.py (issue 12). Only ever shrinks.
def test_no_test_module_imports_conftest_or_another_test_module():
    """A helper two test modules share lives in a support module (testbed.py, dev_server.py,
    oracle.py, ...) or is a conftest fixture: importing a test module runs its module-level
    code, collects its tests twice in the importer's namespace, and hides what depends on what."""
    offenders = []
    for path in sorted((ROOT / "analytics_pipeline_tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                # Our test modules only: a library's (dagster._core.test_utils) is not one.
                ours = node.level > 0 or node.module.split(".")[0] in (
                    "analytics_pipeline_tests",
                    "conftest",
                )
                leaf = node.module.rsplit(".", 1)[-1]
                if ours and (leaf == "conftest" or leaf.startswith("test_")):
                    offenders.append(f"{path.name}:{node.lineno} imports {node.module}")
    assert not offenders, offenders
