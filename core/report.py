"""Values that leave the engine: one StepReport per step, one PruneResult per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import ConfigDict, Field

from core.contract.records import Decision, StepRecord, StopReason

__all__ = ["Decision", "PruneResult", "StepCallback", "StepReport", "StopReason"]


class StepReport(StepRecord):
    """What one pruning step did; emitted through `on_step` and stored as the job's time series.

    The stored fields are StepRecord's; the engine adds how long each phase of the step took and
    `recovery_epochs`, the extra fine-tuning epochs the adaptive controller gave the step before
    judging it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase_seconds: dict[str, float] = Field(default_factory=dict)
    recovery_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as plain values (StepRecord's fields and `phase_seconds`)."""
        return self.model_dump()


StepCallback = Callable[[StepReport], None]


@dataclass
class PruneResult:
    """The outcome of `core.loop.prune`.

    `best_sparsity_within_tolerance` is the highest measured sparsity whose validation metric
    stayed within `max_metric_drop` of the dense metric, whatever the target was.
    `target_sparsity` is the sparsity the run aimed at (`max_sparsity` for `target_sparsity:
    max`); `target_reached` says whether it ended there within tolerance (for `max`: whether the
    search converged), and `target_missed_reason` says why not, in words. `curve` lists the
    accepted (sparsity, metric) points, in step order.
    """

    criterion: str
    dense_metric: float
    metric: float
    sparsity: float
    best_sparsity_within_tolerance: float
    within_tolerance: bool
    stop_reason: StopReason
    epochs: int
    seconds: float
    steps: list[StepReport] = field(default_factory=list)
    probe: dict[str, float] = field(default_factory=dict)
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    # prunable layers the granularity left alone: [{"name": ..., "reason": ...}]
    skipped_layers: list[dict[str, str]] = field(default_factory=list)
    target_sparsity: float = 0.0
    target_reached: bool = False
    target_missed_reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [report.to_dict() for report in self.steps]
        return data
