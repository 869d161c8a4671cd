"""The claim a worker makes for a message: the fairly chosen job, see `service.store.fair`.

A message for a job that is not queued (a takeover of a dead lease, a duplicate, a job already
run for another message) first tries that job, as before; when it is not taken, the message is
spent on the fair choice among the queued jobs of its queue, so that a message never goes unused
while a job waits. When two workers pick the same job at once, one claim loses; it then claims
the message's own job if that is still queued.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from service.store import Claim, JobStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FairClaim:
    """A claim (None: nothing taken), or `deferred` when every waiting tenant is at its cap."""

    claim: Claim | None
    deferred: bool = False
    queue: str | None = None


def claim_fairly(
    store: JobStore,
    job_id: str,
    *,
    owner: str,
    stale_after_s: float,
    max_attempts: int,
    max_running_per_tenant: int,
) -> FairClaim:
    """Claim the job a message for `job_id` should run (see the module docstring)."""

    def claim(candidate: str) -> Claim | None:
        return store.claim(
            candidate, owner=owner, stale_after_s=stale_after_s, max_attempts=max_attempts
        )

    named = store.queue_and_state(job_id)
    if named is None:
        return FairClaim(claim=None)
    queue, state = named
    if state != "queued":
        taken = claim(job_id)
        if taken is not None:
            return FairClaim(claim=taken)
    chosen, capped = store.fair_pick(queue, max_running_per_tenant=max_running_per_tenant)
    if capped:
        return FairClaim(claim=None, deferred=state == "queued", queue=queue)
    for candidate in dict.fromkeys(c for c in (chosen, job_id) if c is not None):
        if candidate == job_id and state != "queued":
            continue
        taken = claim(candidate)
        if taken is not None:
            if candidate != job_id:
                log.info("job %s: runs first (fair share) on the message of %s", candidate, job_id)
            return FairClaim(claim=taken)
    return FairClaim(claim=None)
