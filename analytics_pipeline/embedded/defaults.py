"""The embedded PostgreSQL as the default for processes that `analytics-pipeline` did not start.

`dagster dev`, `dagster definitions validate` and `dg` build the Dagster instance from the
project's dagster.yaml themselves. Its storages (analytics_pipeline.instance.storage) call
`ensure_embedded_defaults` when DAGSTER_PG_URL is not set: the first process of such a command
starts (or attaches to) the embedded server and exports its URLs, so the webserver, daemon, code
server and run workers it starts inherit them and never start a server of their own. The process
that started the server stops it when it exits; one that only attached leaves it to its owner.
"""

from __future__ import annotations

import atexit

from analytics_pipeline.embedded.server import EmbeddedPostgres
from analytics_pipeline.settings import state_home
from analytics_pipeline.settings.registry import DAGSTER_PG_URL, OLTP_URL

_server: EmbeddedPostgres | None = None


def ensure_embedded_defaults() -> None:
    """Export the embedded server's URLs for whichever of OLTP / Dagster URL is unset."""
    global _server
    if OLTP_URL.raw() and DAGSTER_PG_URL.raw():
        return
    if _server is None:
        server = EmbeddedPostgres(state_home() / "postgres")
        server.start()
        if server.owned:
            atexit.register(server.stop)
        _server = server
    _server.export_default_urls()
