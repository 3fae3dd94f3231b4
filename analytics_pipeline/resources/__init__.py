"""Dagster resources: the two databases (and, later, the event-tracking facade)."""

from analytics_pipeline.resources.database import OlapDatabase, OltpDatabase

__all__ = ["OlapDatabase", "OltpDatabase"]
