"""Response bodies of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from core.contract.records import StepRecord
from service.db.models import Artifact, Job, JobEvent, JobStep
from service.jsonbody import printable_text


class ErrorDetail(BaseModel):
    """One problem: a machine-readable code, a message and, for bad input, the field path."""

    code: str
    message: str
    field: str | None = None


class ErrorInfo(ErrorDetail):
    """The error of a failed request; validation errors list every field in `details`."""

    details: list[ErrorDetail] | None = None


class ErrorBody(BaseModel):
    """Every error response: {"error": {"code", "message", "field"?, "details"?}}."""

    error: ErrorInfo


class JobError(BaseModel):
    """Why a job failed."""

    code: str
    message: str | None = None


class JobPublic(BaseModel):
    """A job as clients see it."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    queue: str
    state: str
    phase: str | None
    attempt: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    target_sparsity: float
    sparsity: float | None
    dense_metric: float | None
    metric: float | None
    progress: float
    target_reached: bool | None = None
    target_missed_reason: str | None = None
    error: JobError | None
    result: dict[str, Any] | None
    spec: dict[str, Any]

    @classmethod
    def of(cls, job: Job) -> JobPublic:
        """Build from a job row; `target_reached` and its reason come from the stored result.

        Text no JSON encoder can write is shown as U+FFFD.
        """
        error = (
            JobError(code=job.error_code, message=printable_text(job.error_message))
            if job.error_code
            else None
        )
        outcome = ("target_reached", "target_missed_reason", "error")
        data = {
            name: printable_text(getattr(job, name))
            for name in cls.model_fields
            if name not in outcome
        }
        result = job.result or {}
        return cls.model_validate(
            {
                **data,
                "error": error,
                "target_reached": result.get("target_reached"),
                "target_missed_reason": printable_text(result.get("target_missed_reason")),
            }
        )


class JobList(BaseModel):
    """One page of jobs, newest first; pass `next_cursor` as `cursor` for the next page."""

    items: list[JobPublic]
    next_cursor: str | None


class StepPublic(StepRecord):
    """One pruning step of a job: StepRecord's fields, the attempt that made it and when."""

    model_config = ConfigDict(from_attributes=True, frozen=False)

    # served as stored: a row written by a newer worker may carry a decision this API predates
    decision: str  # type: ignore[assignment]
    attempt: int
    created_at: datetime

    @classmethod
    def of(cls, step: JobStep) -> StepPublic:
        """Build from a step row."""
        return cls.model_validate(step)


class ArtifactPublic(BaseModel):
    """A file a job produced; `url` is its download path on this API."""

    name: str
    size_bytes: int
    sha256: str
    created_at: datetime
    url: str

    @classmethod
    def of(cls, artifact: Artifact) -> ArtifactPublic:
        """Build from an artifact row."""
        return cls(
            name=artifact.name,
            size_bytes=artifact.size_bytes,
            sha256=artifact.sha256,
            created_at=artifact.created_at,
            url=f"/v1/jobs/{artifact.job_id}/artifacts/{artifact.name}",
        )


class EventPublic(BaseModel):
    """One event of a job's log."""

    model_config = ConfigDict(from_attributes=True)

    seq: int
    at: datetime
    kind: str
    level: str
    message: str
    data: dict[str, Any]

    @classmethod
    def of(cls, event: JobEvent) -> EventPublic:
        """Build from an event row."""
        return cls.model_validate(event)


class EventPage(BaseModel):
    """Events after a cursor, oldest first; pass `next_after` as `after` for the next ones."""

    events: list[EventPublic]
    next_after: int
