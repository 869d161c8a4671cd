"""A job's events: one page after a cursor, or a server-sent event stream that follows the job."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from service.db.models import FINAL_STATES
from service.deps import Services, ServicesDep, TenantDep
from service.query import reject_unknown_query
from service.routes.jobs import ERRORS, JobIdDep
from service.schemas import EventPage, EventPublic
from service.store.events import MAX_EVENTS_PAGE

router = APIRouter(
    prefix="/v1/jobs/{job_id}/events",
    tags=["events"],
    dependencies=[Depends(reject_unknown_query)],
)

# How often the stream looks for new events, and how long it may stay silent: proxies close
# connections that send nothing for a minute or so, so a comment line is sent before that.
POLL_S = 0.5
HEARTBEAT_S = 15.0
STREAM_BATCH = 200

AfterQuery = Annotated[int, Query(ge=0, description="return events with seq greater than this")]


@router.get("", responses=ERRORS)
def list_events(
    tenant: TenantDep,
    job_id: JobIdDep,
    services: ServicesDep,
    after: AfterQuery = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_EVENTS_PAGE)] = 100,
) -> EventPage:
    """The job's events after `after`, oldest first; `next_after` is the cursor to pass next."""
    services.store.get_job(tenant.id, job_id)
    rows = services.store.list_events(job_id, after=after, limit=limit)
    events = [EventPublic.of(row) for row in rows]
    return EventPage(events=events, next_after=events[-1].seq if events else after)


def sse_frame(event: EventPublic) -> str:
    """One server-sent event: its seq as the id (browsers resume with Last-Event-ID)."""
    payload = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.seq}\ndata: {payload}\n\n"


async def _follow(
    request: Request, services: Services, job_id: str, after: int
) -> AsyncIterator[str]:
    store = services.store
    last_sent = time.monotonic()
    yield f"retry: {int(POLL_S * 4000)}\n\n"
    while not await request.is_disconnected():
        # The state is read before the events: a job's final event is written in the same
        # transaction as its final state, so once the state is final no event can follow.
        job = await run_in_threadpool(store.load_job, job_id)
        rows = await run_in_threadpool(store.list_events, job_id, after=after, limit=STREAM_BATCH)
        for row in rows:
            event = EventPublic.of(row)
            after = event.seq
            yield sse_frame(event)
            last_sent = time.monotonic()
        if len(rows) == STREAM_BATCH:
            continue
        if job is None or job.state in FINAL_STATES:
            return
        if time.monotonic() - last_sent >= HEARTBEAT_S:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(POLL_S)


@router.get(
    "/stream",
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}},
    response_class=StreamingResponse,
)
def stream_events(
    request: Request,
    tenant: TenantDep,
    job_id: JobIdDep,
    services: ServicesDep,
    after: AfterQuery = 0,
) -> StreamingResponse:
    """Follow the job's events as server-sent events until it is final and all are sent.

    Each event is one `data:` line of JSON (the shape of `GET .../events`) with its seq as
    the `id:`; a `Last-Event-ID` header resumes after that seq. Comment lines keep idle
    connections open.
    """
    services.store.get_job(tenant.id, job_id)
    resume = request.headers.get("last-event-id", "")
    if resume.isdigit():
        after = max(after, int(resume))
    return StreamingResponse(
        _follow(request, services, job_id, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
