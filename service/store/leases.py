"""Worker-side job lifecycle: claim a lease, heartbeat, phase, finish, requeue stale jobs.

Every transition is one conditional UPDATE whose WHERE clause states the precondition, and the
row count says whether it held, so two workers racing on the same job never both win.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import CursorResult, case, func, or_, select, update

from core.contract.errors import ErrorCode
from core.contract.states import FINAL_STATES, JOB_STATES, LEASED_STATES, PHASES
from service.db.models import Job, Tenant, utcnow
from service.store.base import StoreBase
from service.store.events import add_event, outcome_message
from service.store.jobs import is_job_id
from service.store.redact import tenant_safe

ATTEMPTS_EXHAUSTED: ErrorCode = "attempts_exhausted"


@dataclass(frozen=True)
class Claim:
    """A lease on a job: what the worker needs to run it."""

    job_id: str
    tenant_id: int
    tenant: str
    attempt: int
    spec: dict[str, Any]
    queue: str
    cancel_requested: bool
    # The job ran before this claim, on an attempt that was handed back (a drained worker).
    ran_before: bool = False

    @property
    def resumed(self) -> bool:
        """True when an earlier attempt ran (the worker resumes from its checkpoint)."""
        return self.attempt > 1 or self.ran_before


@dataclass(frozen=True)
class LeaseStatus:
    """The answer to a heartbeat: does the caller still own the job, and was cancel asked."""

    owned: bool
    cancel_requested: bool


def _rowcount(result: Any) -> int:
    if not isinstance(result, CursorResult):
        raise TypeError("expected the result of an UPDATE")
    return int(result.rowcount)


class LeaseOps(StoreBase):
    """The lease protocol between workers and the results store."""

    def claim(
        self, job_id: str, *, owner: str, stale_after_s: float, max_attempts: int
    ) -> Claim | None:
        """Take the lease on a job and start its next attempt.

        A queued job is taken; so is a running or cancelling job whose heartbeat is older than
        `stale_after_s` (its worker died), or whose lease `owner` already holds (a restarted
        process with the same identity). The attempt counter is incremented.

        Args:
            job_id: the job named by the message.
            owner: this worker's lease identity.
            stale_after_s: heartbeat age after which a lease is considered dead.
            max_attempts: attempts allowed; a job that would exceed it is failed instead.

        Returns:
            The claim, or None when the job is missing, final, leased live by another worker,
            or has used up its attempts (it is then failed with error_code "attempts_exhausted",
            or cancelled when cancel was requested).
        """
        if stale_after_s <= 0:
            raise ValueError(f"stale_after_s {stale_after_s} must be positive")
        if max_attempts < 1:
            raise ValueError(f"max_attempts {max_attempts} must be at least 1")
        if not is_job_id(job_id):
            return None  # no such job can exist; a garbled message is simply not taken
        now = utcnow()
        takeable = or_(
            Job.state == "queued",
            Job.state.in_(LEASED_STATES)
            & or_(
                Job.heartbeat_at.is_(None),
                Job.heartbeat_at < now - timedelta(seconds=stale_after_s),
                Job.lease_owner == owner,
            ),
        )
        with self.tx() as session:
            ran_before = session.scalar(select(Job.started_at).where(Job.id == job_id))
            taken = session.execute(
                update(Job)
                .where(Job.id == job_id, takeable, Job.attempt < max_attempts)
                .values(
                    state=case((Job.cancel_requested, "cancelling"), else_="running"),
                    lease_owner=owner,
                    heartbeat_at=now,
                    attempt=Job.attempt + 1,
                    started_at=func.coalesce(Job.started_at, now),
                )
            )
            if _rowcount(taken) == 1:
                row = session.execute(
                    select(Job, Tenant.name).join(Tenant).where(Job.id == job_id)
                ).one()
                job, tenant = row
                add_event(
                    session,
                    job_id,
                    kind="claimed",
                    message=f"attempt {job.attempt} claimed by worker {owner}",
                    data={"worker": owner, "attempt": job.attempt},
                )
                return Claim(
                    job_id=job.id,
                    tenant_id=job.tenant_id,
                    tenant=tenant,
                    attempt=job.attempt,
                    spec=dict(job.spec),
                    queue=job.queue,
                    cancel_requested=job.cancel_requested,
                    ran_before=ran_before is not None,
                )
            exhausted = session.execute(
                update(Job)
                .where(Job.id == job_id, takeable, Job.attempt >= max_attempts)
                .values(
                    # A job asked to stop ends as asked, not as a failure of its last attempt.
                    state=case((Job.cancel_requested, "cancelled"), else_="failed"),
                    error_code=case((Job.cancel_requested, "cancelled"), else_=ATTEMPTS_EXHAUSTED),
                    error_message=case(
                        (Job.cancel_requested, "cancelled by request"),
                        else_=f"gave up after {max_attempts} attempts",
                    ),
                    finished_at=now,
                    lease_owner=None,
                )
            )
            if _rowcount(exhausted) == 1:
                state, message = session.execute(
                    select(Job.state, Job.error_message).where(Job.id == job_id)
                ).one()
                level = "warning" if state == "cancelled" else "error"
                add_event(
                    session, job_id, kind="finished", level=level, message=f"{state}: {message}"
                )
        return None

    def heartbeat(self, job_id: str, *, owner: str) -> LeaseStatus:
        """Renew the lease; says whether the caller still owns the job and if cancel was asked."""
        now = utcnow()
        with self.tx() as session:
            renewed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(LEASED_STATES))
                .values(heartbeat_at=now)
            )
            cancel = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
        return LeaseStatus(owned=_rowcount(renewed) == 1, cancel_requested=bool(cancel))

    def set_phase(
        self, job_id: str, *, owner: str, phase: str, dense_metric: float | None = None
    ) -> bool:
        """Record the running job's phase (and the dense baseline metric once known).

        Returns:
            False when `owner` no longer holds the lease (nothing is written).
        """
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
        values: dict[str, Any] = {"phase": phase, "heartbeat_at": utcnow()}
        if dense_metric is not None:
            values["dense_metric"] = float(dense_metric)
        with self.tx() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(LEASED_STATES))
                .values(**values)
            )
        return _rowcount(result) == 1

    def finish(
        self,
        job_id: str,
        *,
        owner: str,
        state: str,
        result: Mapping[str, Any] | None = None,
        error_code: ErrorCode | None = None,
        error_message: str | None = None,
    ) -> bool:
        """End the job, but only while `owner` still holds its lease.

        Numbers named `sparsity`, `metric` and `dense_metric` in `result` are copied to the
        job's columns; a succeeded job's progress becomes 1.

        Calling it again after it succeeded (a retry whose first reply was lost) returns True
        and writes nothing.

        Returns:
            False when the lease was lost (another worker took over): nothing is written.
        """
        if state not in FINAL_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(FINAL_STATES)}")
        values: dict[str, Any] = {
            "state": state,
            "finished_at": utcnow(),
            "result": dict(result) if result is not None else None,
            "error_code": error_code,
            # The one place a job's error is written: the tenant never sees the store's text.
            "error_message": tenant_safe(error_message),
        }
        if state == "succeeded":
            values["progress"] = 1.0
        for column in ("sparsity", "metric", "dense_metric"):
            number = (result or {}).get(column)
            if isinstance(number, int | float) and not isinstance(number, bool):
                values[column] = float(number)
        with self.tx() as session:
            done = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state.in_(LEASED_STATES))
                .values(**values)
            )
            if _rowcount(done) == 1:
                target = session.scalar(select(Job.target_sparsity).where(Job.id == job_id))
                level, message = outcome_message(
                    state,
                    target_sparsity=target,
                    result=result,
                    error_code=error_code,
                    error_message=values["error_message"],
                )
                add_event(
                    session,
                    job_id,
                    kind="finished",
                    level=level,
                    message=message,
                    data={"state": state, "error_code": error_code},
                )
                return True
            # A retry after a commit whose reply was lost finds its own write already there.
            current = session.execute(
                select(Job.state, Job.lease_owner).where(Job.id == job_id)
            ).one_or_none()
        return current is not None and tuple(current) == (state, owner)

    def release(self, job_id: str, *, owner: str) -> bool:
        """Give a just-claimed job back to the queue, as if the claim had not happened.

        For a worker that cannot run the job (its spec is newer than the worker): the job is
        queued again, its lease cleared and the claim's attempt taken back, so it counts as
        no failure. A job whose cancel was requested meanwhile is not released.

        Returns:
            False when `owner` does not hold the lease of a running job (nothing is written).
        """
        with self.tx() as session:
            released = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
                .values(
                    state="queued",
                    lease_owner=None,
                    heartbeat_at=None,
                    phase=None,
                    attempt=Job.attempt - 1,
                    started_at=case((Job.attempt <= 1, None), else_=Job.started_at),
                )
            )
        return _rowcount(released) == 1

    def requeue_stale(self, *, stale_after_s: float) -> list[str]:
        """Put running jobs whose heartbeat is older than `stale_after_s` back in the queue.

        Their lease is cleared; stale cancelling jobs are cancelled outright, since nobody is
        left to honour the request.

        Returns:
            The ids of the requeued jobs, for the caller to send again.
        """
        now = utcnow()
        stale = Job.heartbeat_at.is_(None) | (
            Job.heartbeat_at < now - timedelta(seconds=stale_after_s)
        )
        with self.tx() as session:
            dropped = list(session.scalars(select(Job.id).where(Job.state == "cancelling", stale)))
            for job_id in dropped:
                ended = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == "cancelling", stale)
                    .values(state="cancelled", finished_at=now, lease_owner=None)
                )
                if _rowcount(ended) == 1:
                    add_event(
                        session,
                        job_id,
                        kind="finished",
                        level="warning",
                        message="cancelled: its worker stopped heartbeating while cancelling",
                    )
            ids = list(session.scalars(select(Job.id).where(Job.state == "running", stale)))
            requeued: list[str] = []
            for job_id in ids:
                moved = session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == "running", stale)
                    .values(state="queued", lease_owner=None, phase=None)
                )
                if _rowcount(moved) == 1:
                    requeued.append(job_id)
                    add_event(
                        session,
                        job_id,
                        kind="requeued",
                        level="warning",
                        message=(
                            f"requeued: no heartbeat from its worker for {stale_after_s:g}s; "
                            "the next attempt resumes from the last checkpoint"
                        ),
                        data={"stale_after_s": stale_after_s},
                    )
        return requeued

    def queued_before(self, *, age_s: float) -> list[tuple[str, str]]:
        """Queued jobs created more than `age_s` seconds ago, as (id, queue), oldest first.

        The lost-message recovery compares them with what the broker holds.
        """
        if age_s < 0:
            raise ValueError(f"age_s {age_s} must not be negative")
        cutoff = utcnow() - timedelta(seconds=age_s)
        with self.tx() as session:
            rows = session.execute(
                select(Job.id, Job.queue)
                .where(Job.state == "queued", Job.created_at < cutoff)
                .order_by(Job.created_at)
            )
            return [(str(job_id), str(queue)) for job_id, queue in rows]

    def job_state_counts(self) -> dict[str, int]:
        """Jobs per state over all tenants (every state present, zero when none)."""
        counts: dict[str, int] = dict.fromkeys(JOB_STATES, 0)
        with self.tx() as session:
            for state, count in session.execute(
                select(Job.state, func.count()).group_by(Job.state)
            ):
                counts[state] = int(count)
        return counts

    def max_heartbeat_age_s(self) -> float:
        """Seconds since the oldest heartbeat among running and cancelling jobs (0 if none)."""
        with self.tx() as session:
            oldest = session.scalar(
                select(func.min(Job.heartbeat_at)).where(Job.state.in_(LEASED_STATES))
            )
        if oldest is None:
            return 0.0
        return max(0.0, (utcnow() - oldest).total_seconds())

    def active_queues(self) -> list[str]:
        """Queues that have at least one queued job."""
        with self.tx() as session:
            return sorted(
                session.scalars(select(Job.queue).where(Job.state == "queued").distinct())
            )
