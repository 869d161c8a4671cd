"""Values that leave the engine: one StepReport per step, one PruneResult per run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Decision = Literal[
    "baseline",  # step 0: the dense model, evaluated
    "accelerate",  # within tolerance with headroom: the next increment grows
    "keep",  # within tolerance: the next increment stays
    "shrink",  # within tolerance but close to it: the next increment shrinks
    "rollback",  # past tolerance: back to the last good checkpoint, smaller increment
    "scheduled",  # a fixed schedule (oneshot/linear/cubic) took the step
    "final",  # final fine-tuning at the last accepted sparsity
]

StopReason = Literal[
    "target_reached", "no_headroom", "max_epochs", "max_runtime", "schedule_done", "step_limit"
]


@dataclass(frozen=True)
class StepReport:
    """What one pruning step did; emitted through `on_step` and stored as the job's time series.

    `target_sparsity` is what the schedule asked for; `sparsity` is counted from the weights
    (zeros over prunable weights, or removed parameters for channel pruning). `recovery_epochs`
    are the extra fine-tuning epochs the adaptive controller gave the step before judging it.
    """

    step: int
    target_sparsity: float
    sparsity: float
    metric: float
    loss: float
    decision: Decision
    seconds: float
    epochs: int
    phase_seconds: dict[str, float] = field(default_factory=dict)
    recovery_epochs: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    target_sparsity: float = 0.0
    target_reached: bool = False
    target_missed_reason: str | None = None
    curve: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["steps"] = [report.to_dict() for report in self.steps]
        return data
