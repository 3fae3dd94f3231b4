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

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from analytics_pipeline.errors import ConfigurationError

EXECUTOR_ENV = "ANALYTICS_EXECUTOR"
CELERY_BROKER_ENV = "ANALYTICS_CELERY_BROKER"
CELERY_BACKEND_ENV = "ANALYTICS_CELERY_BACKEND"
CELERY_QUEUE_ENV = "ANALYTICS_CELERY_QUEUE"

MULTIPROCESS = "multiprocess"
CELERY = "celery"
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
# rpc:// sends each step's result back over the broker to the run that asked: no extra service.
DEFAULT_BACKEND = "rpc://"
DEFAULT_QUEUE = "dagster"


def celery_config(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The celery executor's config, which the workers' app is built from too."""
    env = os.environ if environ is None else environ
    return {
        "broker": env.get(CELERY_BROKER_ENV) or DEFAULT_BROKER,
        "backend": env.get(CELERY_BACKEND_ENV) or DEFAULT_BACKEND,
        "config_source": {
            "task_default_queue": env.get(CELERY_QUEUE_ENV) or DEFAULT_QUEUE,
            # A task is acknowledged when it ends, not when a worker takes it: a worker that
            # dies mid-step gives the step back to the broker, which hands it to another worker
            # (the refresh is one transaction, so the dead worker wrote nothing). Without this
            # the run would wait forever for the lost step's result.
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
        },
    }


def resolve_executor(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition | None:
    """The executor ANALYTICS_EXECUTOR names; None keeps Dagster's default (multiprocess)."""
    env = os.environ if environ is None else environ
    profile = (env.get(EXECUTOR_ENV) or MULTIPROCESS).strip().lower()
    if profile == MULTIPROCESS:
        return None
    if profile != CELERY:
        raise ConfigurationError(
            f"{EXECUTOR_ENV}={profile!r} is not a deployment profile; use {MULTIPROCESS!r} "
            f"(the default) or {CELERY!r}"
        )
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigurationError(
            f"{EXECUTOR_ENV}=celery needs dagster-celery: pip install 'analytics_pipeline[celery]'"
        ) from None
    return celery_executor.configured(celery_config(env), name="celery")
