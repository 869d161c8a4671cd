"""Typed records that cross process boundaries: a step, a job's result, an artifact's manifest.

Each is the one definition of its fields: the engine builds them, the store and the API store
and serve them, the CLI and the client read them. Readers ignore fields they do not know, so a
record written by a newer version still reads; writers fill every field this version knows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.contract.layout import ARTIFACT_FORMAT

Decision = Literal[
    "baseline",  # step 0: the dense model, evaluated
    "accelerate",  # within tolerance with headroom: the next increment grows
    "keep",  # within tolerance: the next increment stays
    "shrink",  # within tolerance but close to it: the next increment shrinks
    "provisional",  # past tolerance by at most the split's noise: built on, not returned
    "rollback",  # past tolerance: back to the last good checkpoint, smaller increment
    "scheduled",  # a fixed schedule (oneshot/linear/cubic) took the step
    "final",  # final fine-tuning at the last accepted sparsity, or the target a push reached
]

StopReason = Literal[
    "target_reached", "no_headroom", "max_epochs", "max_runtime", "schedule_done", "step_limit"
]


class StepRecord(BaseModel):
    """One pruning step as stored and served: the job's sparsity/metric time series.

    `target_sparsity` is what the schedule asked for; `sparsity` is counted from the weights
    (zeros over prunable weights, or removed parameters for channel pruning). The fields, in
    order, are steps.csv's columns and the job_steps table's step columns.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    step: int
    target_sparsity: float
    sparsity: float
    metric: float
    loss: float
    decision: Decision
    seconds: float
    epochs: int


# steps.csv's header; STEP_FIELDS are the values a stored step holds beside its number
STEP_COLUMNS: tuple[str, ...] = tuple(StepRecord.model_fields)
STEP_FIELDS: tuple[str, ...] = STEP_COLUMNS[1:]


class JobResult(BaseModel):
    """What a succeeded job's `result` holds: the run's outcome and the artifact's measures.

    Numbers that were NaN or infinite are stored as null, hence the optional floats.
    """

    model_config = ConfigDict(extra="ignore")

    criterion: str
    dense_metric: float | None
    metric: float | None
    sparsity: float | None
    best_sparsity_within_tolerance: float | None
    within_tolerance: bool
    stop_reason: StopReason | str
    epochs: int
    seconds: float | None
    probe: dict[str, float | None] = Field(default_factory=dict)
    layer_sparsity: dict[str, float | None] = Field(default_factory=dict)
    skipped_layers: list[dict[str, str]] = Field(default_factory=list)
    # results stored before these fields existed read as reached (they had no such check)
    target_sparsity: float | None = None
    target_reached: bool = True
    target_missed_reason: str | None = None
    curve: list[dict[str, float | None]] = Field(default_factory=list)
    metrics: dict[str, Any] | None = None
    complexity: dict[str, Any] | None = None
    latency: dict[str, Any] | None = None
    artifact_sparsity: dict[str, Any] | None = None


class FileEntry(BaseModel):
    """A file of the artifact, as the manifest lists it."""

    model_config = ConfigDict(extra="ignore")

    sha256: str
    bytes: int | None = None


class Manifest(BaseModel):
    """manifest.json: what an artifact is, how to rebuild it and what was measured on it."""

    model_config = ConfigDict(extra="ignore")

    format: str = ARTIFACT_FORMAT
    created_at: str | None = None
    seed: int | None = None
    spec: dict[str, Any] = Field(default_factory=dict)
    architecture: dict[str, Any] = Field(default_factory=dict)
    shapes: dict[str, list[int]] | None = None
    metrics: dict[str, dict[str, float | None]] = Field(default_factory=dict)
    sparsity: dict[str, Any] = Field(default_factory=dict)
    complexity: dict[str, dict[str, Any]] = Field(default_factory=dict)
    latency: dict[str, Any] | None = None
    skipped_layers: list[dict[str, str]] = Field(default_factory=list)
    nm_kernels: dict[str, Any] | None = None
    result: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str | None] = Field(default_factory=dict)
    files: dict[str, FileEntry] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
