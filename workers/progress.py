"""The worker's side of a running engine: step reports, phases and the class count to the store.

Each hook writes through the lease: when the write finds another worker holding the job, the
heartbeat is marked lost and the engine stops at its next check.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from core.report import StepReport
from service.store import Claim, JobStore
from workers.errors import DATABASE_ERRORS
from workers.journal import JobJournal
from workers.lease import Heartbeat
from workers.metrics import WorkerMetrics
from workers.retry import retry_for

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Records one attempt's progress; its methods are the engine's callbacks."""

    store: JobStore
    metrics: WorkerMetrics
    owner: str
    claim: Claim
    heartbeat: Heartbeat
    journal: JobJournal

    def classes(self, count: int) -> None:
        self.journal.num_classes = count

    def step(self, report: StepReport) -> None:
        claim, heartbeat = self.claim, self.heartbeat
        if heartbeat.lost:
            return
        row = report.to_dict()
        written = retry_for(
            f"job {claim.job_id}: record step {report.step}",
            lambda: self.store.record_step(
                claim.job_id, owner=self.owner, attempt=claim.attempt, report=row
            ),
            errors=DATABASE_ERRORS,
        )
        if not written:
            # Another worker holds the job now: stop at the next batch, as on heartbeat loss.
            log.warning("job %s: lease lost; step %d not recorded", claim.job_id, report.step)
            heartbeat.lost = True
            return
        self.metrics.step(seconds=report.seconds, sparsity=report.sparsity, metric=report.metric)
        if not self.journal.step(row):
            heartbeat.lost = True

    def phase(self, phase: str) -> None:
        claim = self.claim
        owned = retry_for(
            f"job {claim.job_id}: phase {phase}",
            lambda: self.store.set_phase(claim.job_id, owner=self.owner, phase=phase),
            errors=DATABASE_ERRORS,
        )
        if not (owned and self.journal.phase(phase)):
            self.heartbeat.lost = True
