"""Static types: mypy in strict mode over `analytics_pipeline/`, as part of the one test command.

Why: the package ships `py.typed`, so its users' type checkers trust its annotations, and the
code leans on them (SQLAlchemy rows, Dagster resources, the settings object): an annotation that
lies is a bug nobody sees until it runs. The check is the one configured in pyproject.toml
(`[tool.mypy]`: the package, strict), so `.venv/bin/mypy` by hand and this test agree.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_package_passes_mypy_strict() -> None:
    """The configured check (no arguments: pyproject names the package) reports no error."""
    out = _mypy()
    errors = [line for line in out.stdout.splitlines() if ": error:" in line]
    assert out.returncode == 0, (
        f"mypy --strict found {len(errors)} error(s) in analytics_pipeline/ (fix the types; "
        "a `# type: ignore[code]` only with a reason, where a library is untyped):\n"
        + out.stdout
        + out.stderr
    )
    # It checked the package, not nothing: a config that lost `packages` must not pass quietly.
    assert "Success: no issues found in" in out.stdout, out.stdout + out.stderr


def test_the_configured_check_rejects_a_type_error(tmp_path: Path) -> None:
    """The same configuration fails on a module with a plain type error and on an unannotated
    function (an error only under strict), so the test above can fail, and strict is on."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        textwrap.dedent(
            """\
            def untyped(x):
                return x


            def typed(n: int) -> str:
                return n
            """
        )
    )
    out = _mypy(
        "--config-file",
        str(ROOT / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / "cache"),
        str(probe),
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "probe.py:1: error:" in out.stdout and "[no-untyped-def]" in out.stdout, out.stdout
    assert "probe.py:6: error:" in out.stdout and "[return-value]" in out.stdout, out.stdout
