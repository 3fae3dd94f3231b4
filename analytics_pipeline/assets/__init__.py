"""Dagster assets: the OLTP source tables and one asset per OLAP table."""
