"""The job's log as the worker writes it: every event under the worker's lease.

`JobJournal` is made per claim; the runner tells it what happened (a resume, a phase, a step,
a retry) and it writes the words `workers.narration` puts on them.
"""

from __future__ import annotations

import logging
from typing import Any

from service.store import Claim, JobStore
from workers.errors import DATABASE_ERRORS, INFRA_ERRORS, infra_code, one_line
from workers.narration import Event, StepNarrator, chance_warning, phase_event
from workers.retry import retry_for

log = logging.getLogger(__name__)


class JobJournal:
    """Writes one claim's events; every write reports whether the lease still held."""

    def __init__(self, store: JobStore, *, owner: str, claim: Claim) -> None:
        self.store = store
        self.owner = owner
        self.claim = claim
        self.narrator: StepNarrator | None = None
        self.num_classes: int | None = None
        self._phase: str | None = None

    def _append(self, event: Event) -> bool:
        return self.store.append_event(
            self.claim.job_id,
            owner=self.owner,
            kind=event.kind,
            level=event.level,
            message=event.message,
            data=event.data,
        )

    def write(self, event: Event) -> bool:
        """Append `event`, retrying while the database is unreachable; False: lease lost."""
        return retry_for(
            f"job {self.claim.job_id}: event {event.kind}",
            lambda: self._append(event),
            errors=DATABASE_ERRORS,
        )

    def retry(self, error: BaseException) -> None:
        """Record that this attempt stopped on an infrastructure error and will be retried."""
        reason = f"{infra_code(error)}: {one_line(error)}"
        event = Event(
            "retry",
            f"attempt {self.claim.attempt} stopped ({reason}); the job will be retried",
            level="warning",
            data={"attempt": self.claim.attempt, "reason": reason},
        )
        try:
            self._append(event)  # one try only: the database may be what is down
        except INFRA_ERRORS as failure:
            log.warning("job %s: could not record the retry: %s", self.claim.job_id, failure)

    def resumed(self, step: int | None) -> bool:
        """Record where a later attempt continues from (`step`: its checkpoint, or None)."""
        where = "the start (no checkpoint)" if step is None else f"the checkpoint of step {step}"
        return self.write(
            Event(
                "resumed",
                f"attempt {self.claim.attempt} resumes from {where}",
                data={"attempt": self.claim.attempt, "checkpoint_step": step},
            )
        )

    def start(self, *, metric: str, max_drop: float) -> None:
        """Get ready to narrate steps; a resumed job recalls its dense metric and last sparsity."""
        narrator = StepNarrator(metric=metric, max_drop=max_drop)
        if self.claim.resumed:
            try:
                job = self.store.load_job(self.claim.job_id)
                steps = self.store.list_steps(self.claim.job_id)
            except INFRA_ERRORS:
                job, steps = None, []  # only the wording of the first resumed step suffers
            if job is not None:
                narrator.dense = job.dense_metric
            kept = [s for s in steps if s.decision not in ("rollback", "final")]
            if kept:
                narrator.previous = kept[-1].sparsity
        self.narrator = narrator

    def phase(self, phase: str) -> bool:
        """Record a phase change (repeats of the current phase write nothing)."""
        if phase == self._phase:
            return True
        self._phase = phase
        return self.write(phase_event(phase))

    def step(self, report: dict[str, Any]) -> bool:
        """Record a step's decision in words, and the chance-level warning after the baseline."""
        if self.narrator is None:
            raise RuntimeError("JobJournal.start() must come before the first step")
        events = [self.narrator.step(report)]
        if report["decision"] == "baseline" and self.num_classes is not None:
            warning = chance_warning(
                metric=self.narrator.metric,
                dense=float(report["metric"]),
                num_classes=self.num_classes,
            )
            events += [warning] if warning is not None else []
        return all(self.write(event) for event in events)
