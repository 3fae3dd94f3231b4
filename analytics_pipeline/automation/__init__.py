"""Keeping the OLAP tables fresh without clicks: sensors, schedules and run planning."""
