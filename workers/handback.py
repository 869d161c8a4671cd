"""Handing a claimed job back to the queue: a worker too old for its spec, a worker that is
being stopped (a drain), or a storage failure that outlasted its retries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from core.contract.version import SPEC_VERSION
from service.store import Claim, JobStore
from workers.errors import DATABASE_ERRORS, INFRA_ERRORS
from workers.retry import retry_for
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
SKIPPED = "skipped"
REQUEUED = "requeued"


def store_write(what: str, call: Callable[[], T]) -> T:
    """Run a store operation, retrying it in place while the database is unreachable."""
    return retry_for(what, call, errors=DATABASE_ERRORS)


def newer_spec(spec: dict[str, Any]) -> bool:
    """Whether a stored spec names a spec_version newer than this code's SPEC_VERSION."""
    version = spec.get("spec_version", 1)
    return isinstance(version, int) and not isinstance(version, bool) and version > SPEC_VERSION


class HandBack:
    """The runner's ways of giving a job back; JobRunner provides the attributes."""

    settings: WorkerSettings
    store: JobStore
    owner: str
    send: Callable[[str, str], None] | None

    def _requeue(self, claim: Claim) -> str:
        """Hand a job this worker is too old for back to the queue, for a newer worker."""
        log.info(
            "job %s: spec_version %s is newer than this worker's %d; back to queue %s for a "
            "newer worker (attempt not counted)",
            claim.job_id,
            claim.spec.get("spec_version"),
            SPEC_VERSION,
            claim.queue,
        )
        released = store_write(
            f"job {claim.job_id}: release",
            lambda: self.store.release(claim.job_id, owner=self.owner),
        )
        if not released:
            return SKIPPED
        # A pause before the message goes back: with only old workers on the queue, the job
        # would otherwise bounce between them as fast as they can claim it.
        time.sleep(self.settings.heartbeat_s)
        if self.send is not None:
            self.send(claim.job_id, claim.queue)
        return REQUEUED

    def _hand_back(
        self, claim: Claim, *, reason: str, counted: bool, pause_s: float = 0.0
    ) -> str | None:
        """Put the running job back in the queue (see JobStore.hand_back) and send its id.

        Returns:
            "requeued", or None when the lease was lost meanwhile.
        """
        try:
            handed = store_write(
                f"job {claim.job_id}: hand back",
                lambda: self.store.hand_back(
                    claim.job_id, owner=self.owner, reason=reason, counted=counted
                ),
            )
        except INFRA_ERRORS as error:
            # The lease goes stale and a reaper requeues the job (counting the attempt).
            log.error("job %s: could not hand the job back: %s", claim.job_id, error)
            return None
        if not handed:
            return None
        log.info("job %s: back to queue %s (%s)", claim.job_id, claim.queue, reason)
        if pause_s > 0:
            time.sleep(pause_s)
        if self.send is not None:
            try:
                self.send(claim.job_id, claim.queue)
            except Exception as error:  # the reaper's lost-message recovery sends it later
                log.warning("job %s: could not send it again: %s", claim.job_id, error)
        return REQUEUED
