"""SIGTERM as an orderly exit, so the owner of the embedded server still stops it."""

from __future__ import annotations

import signal


def install_sigterm_handler() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks and atexit hooks (the stop) still run."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
