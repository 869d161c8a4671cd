"""The Celery app of the workers: JSON only, one job per process, late acks.

Celery only carries job ids; the database owns each job's state, so the settings here are about
delivering every id at least once without ever running two copies of a job at the same time
(the lease in the results store stops a duplicate).
"""

from __future__ import annotations

from annotated_types import Le
from celery import Celery

from core.spec import PRUNE_TASK, BudgetSpec
from service.queue import broker_url
from workers.settings import WorkerSettings

# The longest job the spec allows: the upper bound of budget.max_runtime_s (7 days).
MAX_JOB_RUNTIME_S = int(
    next(
        m.le
        for m in BudgetSpec.model_fields["max_runtime_s"].metadata
        if isinstance(m, Le) and isinstance(m.le, int | float)
    )
)
# Redis re-delivers a message that stays unacknowledged longer than the visibility timeout.
# With acks_late a message stays unacknowledged for the whole job, so the timeout must exceed
# the longest allowed job (7 days) or a healthy long job would be delivered a second time.
# A dead worker's job does not wait for it: the lease reaper re-sends it after 3 heartbeats.
VISIBILITY_TIMEOUT_S = MAX_JOB_RUNTIME_S + 24 * 3600

app = Celery("adaprune", include=["workers.tasks"])


def configure(settings: WorkerSettings, *, celery: Celery = app) -> Celery:
    """Point `celery` at the broker of `settings` and apply the delivery rules.

    Args:
        settings: the worker's settings (REDIS_URL, default queue).
        celery: the app to configure (the module's `app` by default).

    Returns:
        The configured app.
    """
    celery.conf.update(
        broker_url=broker_url(settings.redis_url),
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend=None,
        task_ignore_result=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        # A lost broker connection must not cancel the running job: it goes on, and its
        # message is acknowledged (or redelivered) once the connection is back.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_concurrency=1,
        worker_pool="solo",
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue=settings.default_queue,
        task_routes={PRUNE_TASK: {"queue": settings.default_queue}},
    )
    return celery
