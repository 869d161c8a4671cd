"""The per-step time series of a job (sparsity, metric, loss, controller decision)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.contract.records import STEP_COLUMNS, STEP_FIELDS, StepRecord
from core.contract.specfile import describe_validation
from core.contract.states import LEASED_STATES
from service.db.models import Job, JobStep, utcnow
from service.store.base import StoreBase

__all__ = ["STEP_FIELDS", "StepOps", "held_by"]


def _step_record(report: Mapping[str, Any] | StepRecord) -> StepRecord:
    if isinstance(report, StepRecord):
        return report
    missing = [name for name in STEP_COLUMNS if name not in report]
    if missing:
        raise ValueError(f"step report lacks {', '.join(missing)}")
    try:
        return StepRecord.model_validate(report)
    except ValidationError as error:
        raise ValueError(f"step report is invalid: {describe_validation(error)}") from error


def held_by(owner: str | None) -> tuple[ColumnElement[bool], ...]:
    """The WHERE conditions of a worker's write: `owner` holds the lease of a live job.

    Args:
        owner: the lease identity, or None for writes that skip the check (no conditions).
    """
    if owner is None:
        return ()
    return (Job.lease_owner == owner, Job.state.in_(LEASED_STATES))


class StepOps(StoreBase):
    """Write and read job steps."""

    def record_step(
        self,
        job_id: str,
        *,
        owner: str | None,
        attempt: int,
        report: Mapping[str, Any] | StepRecord,
    ) -> bool:
        """Store one step report (replacing a row with the same step) and update the job.

        The job's `sparsity` and `metric` take the step's values, `progress` becomes
        min(1, sparsity / target_sparsity), and a "baseline" step sets `dense_metric`.

        Args:
            job_id: the job.
            owner: the worker's lease identity: nothing is written unless it still holds the
                lease of a running or cancelling job (None: no lease check, for tools and
                fixtures that write outside a worker).
            attempt: the attempt that produced the step.
            report: a StepRecord, or a mapping with its fields (`StepReport.to_dict()`; other
                keys are ignored).

        Returns:
            Whether the step was written (False: the lease was lost, or no such job).
        """
        record = _step_record(report)
        values = record.model_dump(include=set(STEP_FIELDS))
        step = record.step
        row = {"job_id": job_id, "step": step, "attempt": attempt, "created_at": utcnow(), **values}
        with self.tx() as session:
            target = session.scalar(select(Job.target_sparsity).where(Job.id == job_id))
            progress = min(1.0, max(0.0, values["sparsity"] / target)) if target else 0.0
            job_values: dict[str, Any] = {
                "sparsity": values["sparsity"],
                "metric": values["metric"],
                "progress": progress,
            }
            if values["decision"] == "baseline":
                job_values["dense_metric"] = values["metric"]
            # The job's row is updated first: the update holds the lease check, and its row
            # lock keeps the lease from changing hands before the step row is in.
            updated = session.execute(
                update(Job).where(Job.id == job_id, *held_by(owner)).values(**job_values)
            )
            if int(getattr(updated, "rowcount", 0)) != 1:
                return False
            dialect = session.get_bind().dialect.name
            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = insert(JobStep).values(**row)
            updates = {name: statement.excluded[name] for name in row if name not in ("job_id",)}
            session.execute(
                statement.on_conflict_do_update(index_elements=["job_id", "step"], set_=updates)
            )
        return True

    def truncate_steps(self, job_id: str, *, after_step: int) -> int:
        """Delete the steps after `after_step` (a resumed job replays them from its checkpoint).

        Returns:
            How many rows were deleted.
        """
        with self.tx() as session:
            result = session.execute(
                delete(JobStep).where(JobStep.job_id == job_id, JobStep.step > after_step)
            )
            return int(getattr(result, "rowcount", 0))

    def list_steps(self, job_id: str) -> list[JobStep]:
        """The job's steps in step order."""
        with self.tx() as session:
            return list(
                session.scalars(
                    select(JobStep).where(JobStep.job_id == job_id).order_by(JobStep.step)
                )
            )
