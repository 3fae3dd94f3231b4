"""`analytics-pipeline tenant erase ID`: the erasure against the configured databases."""

from __future__ import annotations

import dagster as dg

from analytics_pipeline.governance.erasure import erase_tenant, oltp_status
from analytics_pipeline.governance.pseudonym import Pseudonymizer
from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase
from analytics_pipeline.runtime import environment
from analytics_pipeline.tracking.config import TrackingConfig
from analytics_pipeline.warehouse.migrate import upgrade_database


def erase_command(tenant_id: str, requested_by: str) -> int:
    """Erase the tenant, print what was done (or that it was already done); exit code 0."""
    pseudonymizer = Pseudonymizer.from_env()  # before anything: no salt, no erasure
    with environment() as settings:
        upgrade_database(settings.olap_url)  # analytics.erasures must exist
        oltp = OltpDatabase(url=settings.oltp_url.render_as_string(hide_password=False))
        olap = OlapDatabase(url=settings.olap_url.render_as_string(hide_password=False))
        try:
            with oltp.read_snapshot() as conn:
                status = oltp_status(conn, tenant_id)
            with dg.DagsterInstance.get() as instance:
                result = erase_tenant(
                    tenant_id=tenant_id,
                    requested_by=requested_by,
                    olap=olap,
                    instance=instance,
                    oltp_status=status,
                    outbox_path=TrackingConfig.from_env().outbox_path,
                    pseudonymizer=pseudonymizer,
                )
        finally:
            oltp.dispose()
            olap.dispose()
    print(result.summary(tenant_id))
    return 0
