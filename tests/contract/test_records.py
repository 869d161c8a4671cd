"""The typed records are the one source of their fields: step columns, job result, manifest."""

from __future__ import annotations

import dataclasses

from sqlalchemy import inspect as table_of

from core.artifact import STEP_COLUMNS as CSV_COLUMNS
from core.contract.records import STEP_COLUMNS, STEP_FIELDS, JobResult, Manifest, StepRecord
from core.report import PruneResult, StepReport
from service.db.models import JobStep
from service.schemas import StepPublic
from service.store.steps import STEP_FIELDS as STORED_FIELDS

ROW_ONLY = ("job_id", "attempt", "created_at")


def test_every_step_field_list_is_the_step_records() -> None:
    assert STEP_COLUMNS == (
        "step",
        "target_sparsity",
        "sparsity",
        "metric",
        "loss",
        "decision",
        "seconds",
        "epochs",
    )
    assert CSV_COLUMNS is STEP_COLUMNS and STORED_FIELDS == STEP_FIELDS == STEP_COLUMNS[1:]
    assert tuple(StepReport.model_fields) == (*STEP_COLUMNS, "phase_seconds", "recovery_epochs")
    assert issubclass(StepReport, StepRecord) and issubclass(StepPublic, StepRecord)
    assert tuple(StepPublic.model_fields) == (*STEP_COLUMNS, "attempt", "created_at")


def test_the_job_steps_table_has_a_column_for_each_step_field() -> None:
    columns = [c.key for c in table_of(JobStep).columns if c.key not in ROW_ONLY]
    assert tuple(columns) == STEP_COLUMNS


def test_the_job_result_covers_every_field_of_the_engines_result() -> None:
    engine = {f.name for f in dataclasses.fields(PruneResult)} - {"steps"}
    assert engine <= set(JobResult.model_fields)


def test_records_written_by_a_newer_version_still_read() -> None:
    step = StepRecord.model_validate(
        {**dict.fromkeys(STEP_FIELDS, 0), "step": 3, "decision": "keep", "new_metric": 1.0}
    )
    assert step.step == 3 and not hasattr(step, "new_metric")
    result = JobResult.model_validate(
        {
            "criterion": "magnitude",
            "dense_metric": 0.9,
            "metric": None,
            "sparsity": 0.5,
            "best_sparsity_within_tolerance": 0.5,
            "within_tolerance": True,
            "stop_reason": "a_reason_added_later",
            "epochs": 3,
            "seconds": 1.5,
            "added_later": {"x": 1},
        }
    )
    assert result.metric is None and result.stop_reason == "a_reason_added_later"
    manifest = Manifest.model_validate(
        {
            "format": "adaprune/1",
            "spec": {"name": "x"},
            "architecture": {"arch": "mlp"},
            "files": {"weights.safetensors": {"sha256": "ab", "bytes": 2, "mode": "0644"}},
            "added_later": [1, 2],
        }
    )
    assert manifest.files["weights.safetensors"].sha256 == "ab" and manifest.extra == {}
