"""Fair dispatch between tenants: which queued job a worker runs when a message arrives.

A queue message is a token for one run, not a promise of which job: when a worker receives one
for a queued job, it runs the oldest queued job (of that queue) of the tenant with the fewest
jobs running now (ties: the tenant whose last job started longest ago, or never), among the
tenants under their cap of running jobs. A tenant's backlog of
hundreds of messages therefore cannot make another tenant's single job wait behind it: each
freed worker serves the least-served tenant first. Every job still has one message of its own
(or is re-sent by the reaper's lost-message recovery), so no job is ever left without one; a
message whose job already ran finds its job final and is a no-op, as a duplicate is.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from core.contract.states import LEASED_STATES
from service.db.models import Job
from service.store.base import StoreBase


def _last_served(started: datetime | None) -> tuple[bool, datetime | int]:
    """A sort key: never served before any time served, earlier times first."""
    return (False, 0) if started is None else (True, started)


class FairOps(StoreBase):
    """The fair choice of the next job (used by workers before they claim)."""

    def running_by_tenant(self) -> dict[int, int]:
        """How many jobs each tenant has leased (running or cancelling) now, on every queue."""
        with self.tx() as session:
            rows = session.execute(
                select(Job.tenant_id, func.count())
                .where(Job.state.in_(LEASED_STATES))
                .group_by(Job.tenant_id)
            ).all()
        return {int(tenant): int(count) for tenant, count in rows}

    def queue_and_state(self, job_id: str) -> tuple[str, str] | None:
        """The queue and state of `job_id`, or None when there is no such job."""
        with self.tx() as session:
            job = session.get(Job, job_id)
            return None if job is None else (job.queue, job.state)

    def fair_pick(self, queue: str, *, max_running_per_tenant: int = 0) -> tuple[str | None, bool]:
        """The oldest queued job on `queue` of the least-served tenant under its cap.

        Args:
            queue: the queue the message came from.
            max_running_per_tenant: a tenant with this many leased jobs gets no more (0: no cap).

        Returns:
            (job id, False); (None, False) when nothing is queued there; (None, True) when every
            tenant with queued jobs there is at its cap (the message has to wait).
        """
        with self.tx() as session:
            oldest = session.execute(
                select(Job.tenant_id, func.min(Job.created_at))
                .where(Job.state == "queued", Job.queue == queue)
                .group_by(Job.tenant_id)
            ).all()
        if not oldest:
            return None, False
        running = self.running_by_tenant()
        waiting = [int(tenant) for tenant, _ in oldest]
        with self.tx() as session:
            served = dict(
                session.execute(
                    select(Job.tenant_id, func.max(Job.started_at))
                    .where(Job.tenant_id.in_(waiting))
                    .group_by(Job.tenant_id)
                ).all()
            )
        # fewest running first; among equals the tenant served least recently (never: first),
        # then the oldest waiting job
        candidates = [
            (
                running.get(int(tenant), 0),
                *_last_served(served.get(int(tenant))),
                created,
                int(tenant),
            )
            for tenant, created in oldest
            if max_running_per_tenant <= 0 or running.get(int(tenant), 0) < max_running_per_tenant
        ]
        if not candidates:
            return None, True
        *_, tenant = min(candidates)
        with self.tx() as session:
            chosen = session.execute(
                select(Job.id)
                .where(Job.state == "queued", Job.queue == queue, Job.tenant_id == tenant)
                .order_by(Job.created_at, Job.id)
                .limit(1)
            ).scalar_one_or_none()
        return (None if chosen is None else str(chosen)), False
