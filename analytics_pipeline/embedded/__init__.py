"""The embedded PostgreSQL default, so the README path needs no database installed by hand."""

from analytics_pipeline.embedded.server import EmbeddedPostgres

__all__ = ["EmbeddedPostgres"]
