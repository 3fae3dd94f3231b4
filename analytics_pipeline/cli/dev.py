"""`analytics-pipeline dev`: `dagster dev` on the project's databases, signals forwarded to it."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path


def cmd_dev(args: argparse.Namespace) -> int:
    """Run `dagster dev` (UI and daemon) until it exits; its exit code."""
    import dagster as dg

    from analytics_pipeline.history import record_start_from_oltp
    from analytics_pipeline.runtime import WORKSPACE_YAML, environment, project_file, state_home
    from analytics_pipeline.settings import HOME_ENV
    from analytics_pipeline.sources.schema import NO_TABLES_YET
    from analytics_pipeline.tenants import register_oltp_tenants
    from analytics_pipeline.warehouse.migrate import upgrade_database

    workspace = project_file(WORKSPACE_YAML)
    with environment() as settings:
        # Read by the Dagster processes this starts, when they define the partitions.
        record_start_from_oltp(settings.oltp_url)
        upgrade_database(settings.olap_url)
        synced = register_oltp_tenants(settings.oltp_url, dg.DagsterInstance.get())
        if synced is None:
            print(NO_TABLES_YET, file=sys.stderr)
        else:
            for tenant_id, why in synced.invalid.items():
                print(f"skipped tenant {tenant_id!r}: {why}", file=sys.stderr)
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-w", str(workspace), *args.dagster_args]
        children: list[subprocess.Popen[bytes]] = []

        def _forward(signum: int, _frame: object) -> None:
            # dagster dev stops cleanly on SIGINT (as on Ctrl-C), whichever signal we got.
            for child in children:
                child.send_signal(signal.SIGINT)

        # Installed before the child starts: a handled signal is reset to its default in the
        # child, whereas an ignored one (SIGINT in a background job) would stay ignored there
        # and make dagster dev deaf to SIGTERM and Ctrl-C alike.
        signal.signal(signal.SIGTERM, _forward)
        signal.signal(signal.SIGINT, _forward)
        # From Dagster's home (which holds the copy of dagster.yaml): dagster dev warns that a
        # dagster.yaml in its working folder "will not be used" whenever the two differ.
        dagster_home = os.environ["DAGSTER_HOME"]
        os.environ[HOME_ENV] = str(state_home())
        children.append(subprocess.Popen(cmd, cwd=dagster_home))
        # Leaving the `with` stops the embedded server, once dagster dev has exited.
        return children[0].wait()
