"""One module per OLAP table; `REGISTRY` lists them all, in the order the UI and docs show them.

Adding a table is its module plus one line here: its asset, its checks, the schedules' and
sensors' selection, the schema creation and the docs checks all follow from `REGISTRY`.
"""

from analytics_pipeline.rollups.tables.admin_audit_log import ADMIN_AUDIT_LOG
from analytics_pipeline.rollups.tables.billing_analytics import BILLING_ANALYTICS
from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS
from analytics_pipeline.rollups.tables.lead_analytics import LEAD_ANALYTICS
from analytics_pipeline.rollups.tables.mailbox_analytics import MAILBOX_ANALYTICS
from analytics_pipeline.rollups.tables.sequence_step_analytics import SEQUENCE_STEP_ANALYTICS
from analytics_pipeline.rollups.tables.warmup_analytics import WARMUP_ANALYTICS

REGISTRY = (
    CAMPAIGN_ANALYTICS,
    SEQUENCE_STEP_ANALYTICS,
    MAILBOX_ANALYTICS,
    LEAD_ANALYTICS,
    WARMUP_ANALYTICS,
    BILLING_ANALYTICS,
    ADMIN_AUDIT_LOG,
)

__all__ = ["REGISTRY"]
