"""Job records as the API sees them: create (idempotent), read, list, cancel, quota."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.contract.states import ACTIVE_STATES, JOB_STATES, LEASED_STATES
from service.db.models import Job, Tenant, utcnow
from service.errors import IdempotencyConflict, InvalidCursor, JobNotFound, QuotaExceeded
from service.store.base import StoreBase
from service.store.events import add_event

MAX_PAGE = 100
# The form `str(uuid.uuid4())` gives: ids are compared as text, so other spellings never match.
JOB_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_job_id(value: object) -> bool:
    """Whether `value` is a job id: a lowercase, hyphenated UUID such as `str(uuid.uuid4())`."""
    return isinstance(value, str) and JOB_ID.fullmatch(value) is not None


def check_job_id(job_id: str) -> str:
    """Return `job_id` if it is a job id; otherwise no such job can exist.

    Raises:
        JobNotFound: `job_id` is not a lowercase hyphenated UUID (the same answer as an
            unknown id, so the database never sees text such as NUL bytes).
    """
    if not is_job_id(job_id):
        raise JobNotFound(f"job {job_id!r} not found")
    return job_id


def _target_of(prune: Mapping[str, Any]) -> float:
    """The job's target sparsity column: the number asked, or `max_sparsity` for "max"."""
    target = prune["target_sparsity"]
    return float(prune.get("max_sparsity", 0.99)) if target == "max" else float(target)


def request_hash(spec: Mapping[str, Any], *, queue: str) -> str:
    """sha256 of the canonical JSON of a defaults-filled spec and its resolved queue.

    The digest of jobs stored before submissions were hashed as sent (`service.idempotency`),
    still accepted for them, and the digest of jobs created without a request body.
    """
    canonical = json.dumps({"spec": spec, "queue": queue}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode_cursor(job: Job) -> str:
    """An opaque cursor that resumes a listing after `job` (newest first)."""
    raw = json.dumps([job.created_at.isoformat(), job.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Split a cursor back into (created_at, id).

    Raises:
        InvalidCursor: the cursor was not produced by `encode_cursor`.
    """
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, job_id = json.loads(base64.urlsafe_b64decode(padded))
        stamp = datetime.fromisoformat(created)
        if stamp.tzinfo is None or not is_job_id(job_id):
            raise ValueError(cursor)
        # An offset that moves the stamp outside years 1..9999 cannot be compared in UTC.
        stamp = stamp.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, binascii.Error, json.JSONDecodeError) as error:
        raise InvalidCursor(f"cursor {cursor!r} is not valid") from error
    return stamp, job_id


@dataclass(frozen=True)
class JobPage:
    """One page of a listing and the cursor of the next page (None at the end)."""

    items: list[Job]
    next_cursor: str | None


@dataclass(frozen=True)
class Created:
    """The job a submission refers to, and whether this call created it."""

    job: Job
    created: bool


class JobQueries(StoreBase):
    """Tenant-scoped job operations used by the API."""

    def create_job(
        self,
        *,
        tenant_id: int,
        spec: Mapping[str, Any],
        queue: str,
        idempotency_key: str | None = None,
        max_active: int | None = None,
        digest: str | None = None,
    ) -> Created:
        """Insert a queued job, or return the job an earlier call with the same key created.

        Args:
            tenant_id: the owner.
            spec: the validated spec as JSON-ready data (`JobSpec.model_dump(mode="json")`).
            queue: the Celery queue the job is sent to.
            idempotency_key: the client's key; a repeat with the same body returns the first job.
            max_active: refuse when the tenant already has this many active jobs (None: no cap).
            digest: the request's idempotency digest (`service.idempotency.body_digest`);
                None: `request_hash` of the spec and queue.

        Returns:
            The job and whether it was created by this call.

        Raises:
            IdempotencyConflict: the key was used before with a different body.
            QuotaExceeded: the tenant is at its active-job cap.
        """
        legacy = request_hash(spec, queue=queue)
        # A row stored before body hashing carries the legacy digest; its retry still matches.
        digests = (legacy,) if digest is None else (digest, legacy)
        if idempotency_key is not None:
            existing = self._by_key(tenant_id=tenant_id, key=idempotency_key, digests=digests)
            if existing is not None:
                return Created(existing, created=False)
        job = Job(
            id=str(uuid.uuid4()),
            tenant_id=tenant_id,
            name=str(spec.get("name", "job")),
            queue=queue,
            state="queued",
            attempt=0,
            spec=dict(spec),
            idempotency_key=idempotency_key,
            request_hash=digests[0],
            cancel_requested=False,
            created_at=utcnow(),
            target_sparsity=_target_of(spec["prune"]),
            progress=0.0,
        )
        try:
            with self.tx() as session:
                if max_active is not None:
                    _lock_tenant(session, tenant_id)
                    active = _count_active(session, tenant_id)
                    if active >= max_active:
                        raise QuotaExceeded(
                            f"tenant has {active} active jobs; the cap is {max_active}"
                        )
                session.add(job)
        except IntegrityError:
            # Another request with the same key won the insert race: answer with its job.
            if idempotency_key is None:
                raise
            existing = self._by_key(tenant_id=tenant_id, key=idempotency_key, digests=digests)
            if existing is None:
                raise
            return Created(existing, created=False)
        return Created(job, created=True)

    def _by_key(self, *, tenant_id: int, key: str, digests: tuple[str, ...]) -> Job | None:
        with self.tx() as session:
            job = session.scalars(
                select(Job).where(Job.tenant_id == tenant_id, Job.idempotency_key == key)
            ).one_or_none()
        if job is not None and job.request_hash not in digests:
            raise IdempotencyConflict(
                f"Idempotency-Key {key!r} was already used with a different request body"
            )
        return job

    def get_job(self, tenant_id: int, job_id: str) -> Job:
        """The tenant's job `job_id`.

        Raises:
            JobNotFound: no such job, or it belongs to another tenant.
        """
        check_job_id(job_id)
        with self.tx() as session:
            job = session.get(Job, job_id)
        if job is None or job.tenant_id != tenant_id:
            raise JobNotFound(f"job {job_id!r} not found")
        return job

    def load_job(self, job_id: str) -> Job | None:
        """The job `job_id` whoever owns it (for workers), or None."""
        if not is_job_id(job_id):
            return None
        with self.tx() as session:
            return session.get(Job, job_id)

    def tenant_name(self, tenant_id: int) -> str:
        """The name of tenant `tenant_id` (used in storage keys)."""
        with self.tx() as session:
            tenant = session.get(Tenant, tenant_id)
        if tenant is None:
            raise LookupError(f"tenant {tenant_id} does not exist")
        return tenant.name

    def list_jobs(
        self,
        tenant_id: int,
        *,
        state: str | None = None,
        name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> JobPage:
        """The tenant's jobs, newest first, one page at a time.

        Args:
            tenant_id: the owner.
            state: only jobs in this state.
            name: only jobs with exactly this name.
            created_after: only jobs created at or after this time (timezone-aware).
            created_before: only jobs created before this time (timezone-aware).
            limit: page size, 1..100.
            cursor: `next_cursor` of the previous page.

        Returns:
            The page; ties on created_at are broken by id so pages never repeat or skip a job.
        """
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit {limit} must be between 1 and {MAX_PAGE}")
        if state is not None and state not in JOB_STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(JOB_STATES)}")
        query = select(Job).where(Job.tenant_id == tenant_id)
        if state is not None:
            query = query.where(Job.state == state)
        if name is not None:
            query = query.where(Job.name == name)
        for stamp in (created_after, created_before):
            if stamp is not None and stamp.tzinfo is None:
                raise ValueError(f"timestamp {stamp.isoformat()} has no time zone")
        if created_after is not None:
            query = query.where(Job.created_at >= created_after)
        if created_before is not None:
            query = query.where(Job.created_at < created_before)
        if cursor is not None:
            created, job_id = decode_cursor(cursor)
            query = query.where(
                or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
            )
        query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
        with self.tx() as session:
            rows = list(session.scalars(query))
        items = rows[:limit]
        next_cursor = encode_cursor(items[-1]) if len(rows) > limit else None
        return JobPage(items, next_cursor)

    def count_active(self, tenant_id: int) -> int:
        """How many of the tenant's jobs are queued, running or cancelling."""
        with self.tx() as session:
            return _count_active(session, tenant_id)

    def request_cancel(
        self, tenant_id: int, job_id: str, *, stale_after_s: float | None = None
    ) -> Job:
        """Ask for a job to stop: queued jobs are cancelled at once, running ones go cancelling.

        A running or cancelling job whose heartbeat is older than `stale_after_s` has no live
        worker to honour the request, so it is cancelled at once too. Jobs already cancelling
        (with a live worker) or final are left as they are.

        Args:
            tenant_id: the owner.
            job_id: the job.
            stale_after_s: heartbeat age after which a lease is dead (None: never treat it so).

        Raises:
            JobNotFound: no such job for this tenant.
        """
        check_job_id(job_id)
        if stale_after_s is not None and stale_after_s <= 0:
            raise ValueError(f"stale_after_s {stale_after_s} must be positive")
        now = utcnow()
        scoped = (Job.id == job_id, Job.tenant_id == tenant_id)
        with self.tx() as session:
            cancelled = session.execute(
                update(Job)
                .where(*scoped, Job.state == "queued")
                .values(state="cancelled", cancel_requested=True, finished_at=now)
            )
            if cancelled.rowcount == 0 and stale_after_s is not None:  # type: ignore[attr-defined]
                dead = Job.heartbeat_at.is_(None) | (
                    Job.heartbeat_at < now - timedelta(seconds=stale_after_s)
                )
                cancelled = session.execute(
                    update(Job)
                    .where(*scoped, Job.state.in_(LEASED_STATES), dead)
                    .values(
                        state="cancelled",
                        cancel_requested=True,
                        finished_at=now,
                        lease_owner=None,
                    )
                )
            if cancelled.rowcount == 1:  # type: ignore[attr-defined]
                add_event(
                    session,
                    job_id,
                    kind="finished",
                    level="warning",
                    message="cancelled: by request",
                )
            else:
                asked = session.execute(
                    update(Job)
                    .where(*scoped, Job.state == "running")
                    .values(state="cancelling", cancel_requested=True)
                )
                if asked.rowcount == 1:  # type: ignore[attr-defined]
                    add_event(
                        session,
                        job_id,
                        kind="cancel",
                        message="cancel requested: the worker stops at the next batch",
                    )
        return self.get_job(tenant_id, job_id)

    def mark_enqueue_failed(self, job_id: str, *, message: str) -> None:
        """Fail a queued job whose message never reached the broker.

        Its idempotency key is released so that the client's retry with the same key creates
        a fresh job instead of replaying this failure.
        """
        with self.tx() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == "queued")
                .values(
                    state="failed",
                    error_code="enqueue_failed",
                    error_message=message,
                    idempotency_key=None,
                    finished_at=utcnow(),
                )
            )


def _lock_tenant(session: Session, tenant_id: int) -> None:
    """Serialise the tenant's submissions until this transaction ends (quota check, then insert).

    PostgreSQL locks the tenant's row; SQLite has one writer at a time, so the transaction
    takes the write lock before it counts (it must be the transaction's first statement).
    """
    if session.get_bind().dialect.name == "sqlite":
        session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        return
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())


def _count_active(session: Session, tenant_id: int) -> int:
    query = select(func.count()).where(Job.tenant_id == tenant_id, Job.state.in_(ACTIVE_STATES))
    return int(session.scalar(query) or 0)
