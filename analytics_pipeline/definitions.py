"""Dagster's entry point (pyproject.toml, workspace.yaml): the project's Definitions.

Loading this module is when the Definitions are built, and so when the settings are read: every
declared variable is parsed here, and a value that cannot be used stops the load with a
ConfigurationError naming the variable, its value and the form expected. Code that builds the
Definitions itself (the demo) calls `build_definitions` with settings it resolved.
"""

from __future__ import annotations

from analytics_pipeline.assets.selection import refresh_analytics_job
from analytics_pipeline.settings import Settings
from analytics_pipeline.wiring import build_definitions

defs = build_definitions(Settings.from_env())

__all__ = ["build_definitions", "defs", "refresh_analytics_job"]
