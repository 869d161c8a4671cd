"""Job routes: submit, list, read, steps, cancel."""

from __future__ import annotations

import functools
import json
import logging
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from core.contract.states import JobState
from core.spec import JobSpec
from service.db.models import Tenant
from service.deps import Services, ServicesDep, TenantDep
from service.errors import EnqueueFailed
from service.http_errors import ApiError, validation_error
from service.idempotency import body_digest
from service.policy import DataPolicy, check_policy
from service.query import reject_unknown_query
from service.schemas import ErrorBody, ErrorDetail, JobList, JobPublic, StepPublic
from service.store.jobs import check_job_id

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], dependencies=[Depends(reject_unknown_query)])
log = logging.getLogger(__name__)
# What a tenant sees when the broker refused a job; the cause (hosts, socket paths) is logged.
ENQUEUE_FAILED_MESSAGE = "the job could not be queued; try again"

ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorBody} for status in (401, 404, 409, 413, 422, 429, 503)
}


def job_id_path(job_id: Annotated[str, Path(description="the job's id (a UUID)")]) -> str:
    """The `{job_id}` path parameter, checked: an id that is not a UUID is an unknown job (404)."""
    return check_job_id(job_id)


JobIdDep = Annotated[str, Depends(job_id_path)]


@router.post("", status_code=201, responses=ERRORS)
async def submit_job(
    spec: JobSpec,
    request: Request,
    response: Response,
    tenant: TenantDep,
    services: ServicesDep,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
    x_adaprune_queue: Annotated[str | None, Header(pattern=r"^[a-z0-9-]{1,32}$")] = None,
) -> JobPublic:
    """Submit a pruning job; a repeat with the same Idempotency-Key returns the first job."""
    # Keyed submissions are matched on the body as sent (FastAPI parsed it; this reads its copy).
    digest = None
    if idempotency_key is not None:
        digest = body_digest(await request.json(), queue=x_adaprune_queue)
    # The blocking work (policy, insert, publish) runs in one worker-thread call of our own:
    # FastAPI's path for sync endpoints cost about 0.8 ms more per submission, measured in
    # process, and the POST is the route that clients hammer.
    return await run_in_threadpool(
        _submit, spec, response, tenant, services, idempotency_key, x_adaprune_queue, digest
    )


def _owns_job(services: Services, tenant: Tenant, job_id: str) -> bool:
    job = services.store.load_job(job_id)
    return job is not None and job.tenant_id == tenant.id


def _submit(
    spec: JobSpec,
    response: Response,
    tenant: Tenant,
    services: Services,
    idempotency_key: str | None,
    x_adaprune_queue: str | None,
    digest: str | None,
) -> JobPublic:
    settings = services.settings
    queue = x_adaprune_queue or settings.default_queue
    if queue not in settings.queues:
        raise ApiError(
            422,
            code="unknown_queue",
            message=f"queue {queue!r} is not served here; served: {', '.join(settings.queues)}",
            field="header.x-adaprune-queue",
        )
    problems = check_policy(
        spec,
        allowed_entrypoints=settings.allowed_entrypoints,
        data=DataPolicy.of(settings, tenant=tenant.name),
        owns_job=functools.partial(_owns_job, services, tenant),
    )
    if problems:
        raise validation_error(
            [
                ErrorDetail(code="policy_violation", message=p.message, field=p.field)
                for p in problems
            ]
        )
    stored = spec.model_dump(mode="json")
    try:
        # What the store and every later response must write back; checked before the insert
        # so that a refusal leaves nothing stored or queued.
        json.dumps(stored, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError) as error:
        detail = ErrorDetail(code="json_not_strict", message=str(error), field="body")
        raise validation_error([detail]) from None
    created = services.store.create_job(
        tenant_id=tenant.id,
        spec=stored,
        queue=queue,
        idempotency_key=idempotency_key,
        max_active=tenant.max_active_jobs or settings.tenant_max_active_jobs,
        digest=digest,
    )
    job = created.job
    if not created.created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
        return JobPublic.of(job)
    # Built before the message is published, so that nothing can fail after it.
    public = JobPublic.of(job)
    try:
        services.queue.enqueue(job.id, queue)
    except EnqueueFailed as error:
        log.warning("job %s: enqueue failed: %s", job.id, error)
        services.store.mark_enqueue_failed(job.id, message=ENQUEUE_FAILED_MESSAGE)
        raise ApiError(
            503, code="enqueue_failed", message=f"job {job.id} could not be queued; try again"
        ) from error
    services.metrics.submitted.inc()
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return public


@router.get("", responses=ERRORS)
def list_jobs(
    tenant: TenantDep,
    services: ServicesDep,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    name: Annotated[
        str | None, Query(min_length=1, max_length=128, description="only jobs with this name")
    ] = None,
    created_after: Annotated[
        datetime | None, Query(description="ISO-8601; jobs created at or after it (UTC if no zone)")
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="ISO-8601; jobs created before it (UTC if no zone)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> JobList:
    """List your jobs, newest first, filtered by state, name and creation time."""
    page = services.store.list_jobs(
        tenant.id,
        state=state,
        name=name,
        created_after=_utc(created_after, field="query.created_after"),
        created_before=_utc(created_before, field="query.created_before"),
        limit=limit,
        cursor=cursor,
    )
    return JobList(items=[JobPublic.of(job) for job in page.items], next_cursor=page.next_cursor)


def _utc(stamp: datetime | None, *, field: str) -> datetime | None:
    if stamp is None:
        return None
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    try:
        return stamp.astimezone(UTC)
    except OverflowError:
        detail = ErrorDetail(
            code="validation_error",
            message=f"{stamp.isoformat()} is outside years 1..9999 in UTC",
            field=field,
        )
        raise validation_error([detail]) from None


@router.get("/{job_id}", responses=ERRORS)
def get_job(tenant: TenantDep, job_id: JobIdDep, services: ServicesDep) -> JobPublic:
    """Read one job: state, phase, progress, sparsity, metric, error and result."""
    return JobPublic.of(services.store.get_job(tenant.id, job_id))


@router.get("/{job_id}/steps", responses=ERRORS)
def list_steps(tenant: TenantDep, job_id: JobIdDep, services: ServicesDep) -> list[StepPublic]:
    """The job's pruning steps: the sparsity and metric time series."""
    services.store.get_job(tenant.id, job_id)
    return [StepPublic.of(step) for step in services.store.list_steps(job_id)]


@router.post("/{job_id}/cancel", responses=ERRORS)
def cancel_job(tenant: TenantDep, job_id: JobIdDep, services: ServicesDep) -> JobPublic:
    """Cancel a job: queued jobs stop at once, running ones at the next batch.

    A job whose worker stopped heartbeating is cancelled at once: nobody is left to stop it.
    """
    job = services.store.request_cancel(
        tenant.id, job_id, stale_after_s=services.settings.stale_after_s
    )
    return JobPublic.of(job)
