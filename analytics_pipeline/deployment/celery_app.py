"""The Celery app of the workers: `celery -A analytics_pipeline.deployment.celery_app worker`.

Built from the same settings as the executor (`celery_config`), so the workers listen on the
broker and queue the runs send their steps to. Start a worker with `-Q "$ANALYTICS_CELERY_QUEUE"`
(default `dagster`).
"""

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from analytics_pipeline.deployment.executor import celery_config

# dagster_celery ships py.typed but leaves these functions unannotated (they return Any), hence
# the ignores: the app is a celery.Celery and the task a celery Task whatever the checker knows.
app = make_app(CeleryExecutor.for_cli(**celery_config()).app_args())  # type: ignore[no-untyped-call]

execute_plan = create_task(app)  # type: ignore[no-untyped-call]
