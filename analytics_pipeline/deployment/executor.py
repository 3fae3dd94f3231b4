"""The executor of the deployment, resolved in one place from ANALYTICS_EXECUTOR.

- unset or `multiprocess` (the default): Dagster's multiprocess executor, every step a process
  on the host of the run;
- `celery`: dagster-celery, every step a task on a Celery worker (docs/DEPLOYMENT.md). The
  broker, result backend and queue come from ANALYTICS_CELERY_BROKER, ANALYTICS_CELERY_BACKEND
  and ANALYTICS_CELERY_QUEUE; the workers (`celery -A analytics_pipeline.deployment.celery_app
  worker`) read the same variables through `celery_config`, so both sides always agree.

The `oltp` pool still caps the steps that read OLTP across all workers: the run's orchestrator
claims a pool slot before it sends a step to the broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.settings import ExecutorSettings
from analytics_pipeline.settings import registry as v
from analytics_pipeline.settings.registry import CELERY, MULTIPROCESS

EXECUTOR_ENV = v.EXECUTOR.name
CELERY_BROKER_ENV = v.CELERY_BROKER.name
CELERY_BACKEND_ENV = v.CELERY_BACKEND.name
CELERY_QUEUE_ENV = v.CELERY_QUEUE.name

__all__ = ["CELERY", "MULTIPROCESS", "celery_config", "resolve_executor"]


def celery_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The celery executor's config, which the workers' app is built from too (the
    environment's settings unless `environ` is given)."""
    return _celery_config(ExecutorSettings.from_env(environ))


def _celery_config(executor: ExecutorSettings) -> dict[str, Any]:
    return {
        "broker": executor.celery_broker,
        "backend": executor.celery_backend,
        "config_source": {
            "task_default_queue": executor.celery_queue,
            # A task is acknowledged when it ends, not when a worker takes it: a worker that
            # dies mid-step gives the step back to the broker, which hands it to another worker
            # (the refresh is one transaction, so the dead worker wrote nothing). Without this
            # the run would wait forever for the lost step's result.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
        },
    }


def resolve_executor(executor: ExecutorSettings) -> dg.ExecutorDefinition | None:
    """The executor ANALYTICS_EXECUTOR names; None keeps Dagster's default (multiprocess).

    The profile was checked when the settings were read (multiprocess or celery)."""
    if executor.profile == MULTIPROCESS:
        return None
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigurationError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install 'analytics_pipeline[celery]'"
        ) from None
    configured: dg.ExecutorDefinition = celery_executor.configured(
        _celery_config(executor), name="celery"
    )
    return configured
