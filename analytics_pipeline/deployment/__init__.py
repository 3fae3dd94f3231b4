"""Deployment profiles: which executor runs a run's steps (one host, or Celery workers)."""
