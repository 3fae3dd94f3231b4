"""One module per OLAP table; `REGISTRY` lists them all."""

from analytics_pipeline.rollups.tables.campaign_analytics import CAMPAIGN_ANALYTICS

REGISTRY = (CAMPAIGN_ANALYTICS,)

__all__ = ["REGISTRY"]
