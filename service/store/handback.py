"""A worker hands its running job back to the queue: a drain (the worker is being stopped) or
a storage failure that outlasted its retries. The job resumes from its last checkpoint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from service.db.models import Job
from service.store.base import StoreBase
from service.store.events import add_event


class HandbackOps(StoreBase):
    """Requeue a job that its own worker stops running."""

    def hand_back(self, job_id: str, *, owner: str, reason: str, counted: bool) -> bool:
        """Put the running job `owner` holds back to `queued`, with a `requeued` event.

        The lease and phase are cleared; `started_at` stays, so the next claim resumes from
        the checkpoint even on the same attempt number.

        Args:
            job_id: the job.
            owner: the worker's lease identity.
            reason: why, in words (the event's message and data).
            counted: whether the attempt counts against the cap (a storage failure) or is
                taken back (a drain: no failure of the job).

        Returns:
            False when `owner` does not hold the lease of a running job (nothing is written;
            a job whose cancel was requested is `cancelling`, and is not handed back).
        """
        values: dict[str, Any] = {
            "state": "queued",
            "lease_owner": None,
            "heartbeat_at": None,
            "phase": None,
        }
        if not counted:
            values["attempt"] = Job.attempt - 1
        with self.tx() as session:
            moved = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
                .values(**values)
            )
            if int(getattr(moved, "rowcount", 0)) != 1:
                return False
            note = "the attempt counts" if counted else "the attempt is not counted"
            add_event(
                session,
                job_id,
                kind="requeued",
                level="warning" if counted else "info",
                message=f"requeued: {reason}; {note}; the next attempt resumes from the last "
                "checkpoint",
                data={"reason": reason, "attempt_counted": counted},
            )
        return True
