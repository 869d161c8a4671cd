"""The prune task: the message carries a job id; the runner does the rest."""

from __future__ import annotations

import uuid

from celery import Task
from celery.exceptions import Reject
from celery.utils.time import get_exponential_backoff_interval

from core.spec import PRUNE_TASK
from workers.app import app
from workers.errors import INFRA_ERRORS, RetryAttempt
from workers.handback import SKIPPED
from workers.metrics import WorkerMetrics
from workers.runner import JobRunner
from workers.settings import WorkerSettings

# Infrastructure errors are retried this often (backoff 2, 4, 8, ... up to 60 s), then the job
# is failed with the error's code. A bad spec or a failing model is never retried.
INFRA_RETRIES = 5
RETRY_BACKOFF_S = 2
RETRY_BACKOFF_MAX_S = 60
_runner: JobRunner | None = None


def install_runner(runner: JobRunner) -> None:
    """Use `runner` for the tasks of this process (the `adaprune worker` command sets it)."""
    global _runner
    _runner = runner


def get_runner() -> JobRunner:
    """The process's runner, built from the environment on first use."""
    global _runner
    if _runner is None:
        _runner = JobRunner.from_settings(WorkerSettings(), metrics=WorkerMetrics())
    return _runner


@app.task(  # type: ignore[untyped-decorator]
    name=PRUNE_TASK,
    bind=True,
    autoretry_for=INFRA_ERRORS,
    max_retries=INFRA_RETRIES,
    retry_backoff=RETRY_BACKOFF_S,
    retry_backoff_max=RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    acks_late=True,
    ignore_result=True,
)
def prune(self: Task, job_id: str) -> str:
    """Run the job `job_id` if this worker can take its lease; a duplicate is a no-op."""
    try:
        uuid.UUID(str(job_id))
    except ValueError:
        return SKIPPED
    runner = get_runner()
    if runner.drain.requested:
        # Delivered while this worker stops: back to the broker untouched, for another worker.
        raise Reject("the worker is stopping", requeue=True)
    last_try = self.request.retries >= INFRA_RETRIES
    try:
        return runner.run(str(job_id), last_try=last_try)
    except RetryAttempt as stopped:
        # The same backoff as autoretry_for (which covers errors before any claim), but for
        # the job that ran, which fair dispatch may have chosen instead of the message's.
        countdown = get_exponential_backoff_interval(
            factor=RETRY_BACKOFF_S,
            retries=self.request.retries,
            maximum=RETRY_BACKOFF_MAX_S,
            full_jitter=True,
        )
        raise self.retry(args=[stopped.job_id], exc=stopped.error, countdown=countdown) from None
