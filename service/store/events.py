"""A job's events: the log a user reads to follow it (claims, phases, steps, warnings, outcome).

Workers append through `append_event`, guarded by their lease like every other worker write;
the store's own transitions (claim, finish, requeue, cancel) add theirs in the same
transaction as the change they describe, so the log never tells of a change that did not
happen.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.contract.events import EVENT_KINDS, EVENT_LEVELS
from service.db.models import Job, JobEvent, utcnow
from service.store.base import StoreBase
from service.store.steps import held_by

MAX_EVENTS_PAGE = 1000
MAX_MESSAGE = 2000


def check_event(kind: str, level: str) -> None:
    """Raise ValueError unless `kind` is in EVENT_KINDS and `level` in EVENT_LEVELS."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"event kind {kind!r} is not one of {', '.join(EVENT_KINDS)}")
    if level not in EVENT_LEVELS:
        raise ValueError(f"event level {level!r} is not one of {', '.join(EVENT_LEVELS)}")


def add_event(
    session: Session,
    job_id: str,
    *,
    kind: str,
    message: str,
    level: str = "info",
    data: Mapping[str, Any] | None = None,
) -> None:
    """Add an event to `session`'s transaction (for store operations that change the job)."""
    check_event(kind, level)
    session.add(
        JobEvent(
            job_id=job_id,
            at=utcnow(),
            kind=kind,
            level=level,
            message=message[:MAX_MESSAGE],
            data=dict(data or {}),
        )
    )


class EventOps(StoreBase):
    """Append and read job events."""

    def append_event(
        self,
        job_id: str,
        *,
        owner: str | None,
        kind: str,
        message: str,
        level: str = "info",
        data: Mapping[str, Any] | None = None,
    ) -> bool:
        """Append one event to the job's log.

        Args:
            job_id: the job.
            owner: the worker's lease identity: nothing is written unless it still holds the
                lease of a running or cancelling job (None: no lease check, for the API and
                tools).
            kind: one of EVENT_KINDS.
            message: the event in words, for a person.
            level: "info", "warning" or "error".
            data: the numbers behind the message, as JSON-ready values.

        Returns:
            Whether the event was written (False: the lease was lost, or no such job).
        """
        check_event(kind, level)
        with self.tx() as session:
            if owner is not None:
                # The guard is an UPDATE, as for steps: it takes the row lock (the write lock
                # on SQLite) so the lease cannot change hands before the event is in.
                held = session.execute(
                    update(Job)
                    .where(Job.id == job_id, *held_by(owner))
                    .values(heartbeat_at=utcnow())
                )
                if int(getattr(held, "rowcount", 0)) != 1:
                    return False
            elif session.scalar(select(Job.id).where(Job.id == job_id)) is None:
                return False
            add_event(session, job_id, kind=kind, level=level, message=message, data=data)
        return True

    def list_events(self, job_id: str, *, after: int = 0, limit: int = 100) -> list[JobEvent]:
        """The job's events with `seq` greater than `after`, oldest first, at most `limit`."""
        if not 1 <= limit <= MAX_EVENTS_PAGE:
            raise ValueError(f"limit {limit} must be between 1 and {MAX_EVENTS_PAGE}")
        with self.tx() as session:
            return list(
                session.scalars(
                    select(JobEvent)
                    .where(JobEvent.job_id == job_id, JobEvent.seq > after)
                    .order_by(JobEvent.seq)
                    .limit(limit)
                )
            )


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def outcome_message(
    state: str,
    *,
    target_sparsity: float | None,
    result: Mapping[str, Any] | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> tuple[str, str]:
    """The final event of a job as (level, message): asked against reached, or the error."""
    if state == "failed":
        return "error", f"failed: {error_code}: {error_message}"
    if state == "cancelled":
        return "warning", f"cancelled: {error_message or 'by request'}"
    result = result or {}
    reached = _number(result.get("sparsity"))
    parts = []
    if reached is not None:
        asked = f" of {target_sparsity:.3f} asked" if target_sparsity is not None else ""
        parts.append(f"sparsity {reached:.3f}{asked}")
    metric, dense = _number(result.get("metric")), _number(result.get("dense_metric"))
    if metric is not None:
        baseline = f" (dense {dense:.4f})" if dense is not None else ""
        parts.append(f"metric {metric:.4f}{baseline}")
    if result.get("stop_reason"):
        parts.append(f"stopped: {result['stop_reason']}")
    missed = reached is not None and target_sparsity is not None and reached < target_sparsity
    level = "warning" if missed else "info"
    head = "succeeded, target not reached" if missed else "succeeded"
    return level, f"{head}: {', '.join(parts)}" if parts else head
