"""Rollups: each OLAP table as one declarative definition, and the machinery that refreshes them."""
