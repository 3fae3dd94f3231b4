"""Dagster instance plumbing: storage tuned for per-partition bookkeeping."""
