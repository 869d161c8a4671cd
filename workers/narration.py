"""A job's progress in words: the events the worker writes for the user to read.

Pure functions from what the engine reports to (kind, level, message, data); the runner
writes them through the store under its lease.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A dense metric this close to chance (1 / classes) means the model has learnt nothing yet.
CHANCE_MARGIN = 0.05
PHASE_WORDS = {
    "baseline": "evaluating the dense model",
    "scoring": "scoring weights",
    "finetuning": "fine-tuning with the masks applied",
    "exporting": "exporting and verifying the artifact",
}


@dataclass(frozen=True)
class Event:
    """One event as the store takes it."""

    kind: str
    message: str
    level: str = "info"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepNarrator:
    """Turns step reports into sentences; remembers the previous sparsity and the dense metric.

    Args:
        metric: the task's metric name (higher is better: the drop is dense - metric).
        max_drop: the spec's `max_metric_drop`.
        dense: the dense metric when already known (a resumed job), else None.
        previous: the last recorded step's sparsity (a resumed job), else 0.
        within: the last recorded step within tolerance, when it differs from `previous`.
    """

    metric: str
    max_drop: float
    dense: float | None = None
    previous: float = 0.0
    # the last step within tolerance (provisional steps are not); None: `previous`
    within: float | None = None

    def step(self, report: dict[str, Any]) -> Event:
        """The event of one step report (`StepReport.to_dict()`)."""
        step, decision = int(report["step"]), str(report["decision"])
        sparsity, value = float(report["sparsity"]), float(report["metric"])
        data = {
            "step": step,
            "decision": decision,
            "target_sparsity": float(report["target_sparsity"]),
            "sparsity": sparsity,
            "metric": value,
            "seconds": float(report["seconds"]),
        }
        if decision == "baseline":
            self.dense, self.previous, self.within = value, sparsity, sparsity
            message = f"step {step}: dense baseline, {self.metric} {value:.4f}"
            return Event("step", message, data=data)
        moved = f"{self.previous:.2f} -> {sparsity:.2f} sparsity"
        if self.dense is None:
            judged = f"{self.metric} {value:.4f}"
        else:
            drop = self.dense - value
            sign = "<=" if drop <= self.max_drop + 1e-12 else ">"
            judged = f"{self.metric} {value:.4f} (drop {drop:.3f} {sign} {self.max_drop:g})"
            data["drop"] = drop
        level = "warning" if decision == "rollback" else "info"
        if decision == "final":
            message = f"step {step}: final fine-tuning at {sparsity:.2f} sparsity, {judged}"
        elif decision == "rollback" and self.within is not None and self.within < self.previous:
            # where it returns depends on what follows: the provisional step before it, or (the
            # steps given up, or the run ending past tolerance) the last one within tolerance
            message = (
                f"step {step}: {moved}, {judged}: rollback (the steps since {self.within:.2f} "
                "were provisional)"
            )
        elif decision == "rollback":
            message = f"step {step}: {moved}, {judged}: rollback to {self.previous:.2f}"
        elif decision == "provisional":
            message = (
                f"step {step}: {moved}, {judged}: provisional (past the tolerance by less than "
                "the validation noise; the last model within it is held back)"
            )
        else:
            message = f"step {step}: {moved}, {judged}: {decision}"
        if decision != "rollback":
            self.previous = sparsity
        if decision not in ("rollback", "provisional"):
            self.within = sparsity
        return Event("step", message, level=level, data=data)


def phase_event(phase: str) -> Event:
    """The event of a phase change."""
    words = PHASE_WORDS.get(phase, phase)
    return Event("phase", f"phase {phase}: {words}", data={"phase": phase})


def chance_warning(*, metric: str, dense: float, num_classes: int) -> Event | None:
    """A warning when the dense metric is within CHANCE_MARGIN of 1 / num_classes, else None."""
    if metric != "accuracy" or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if dense > chance + CHANCE_MARGIN:
        return None
    return Event(
        "warning",
        f"dense accuracy {dense:.2f} is at chance level ({num_classes} classes): "
        "pruning results will not mean much",
        level="warning",
        data={"dense_metric": dense, "num_classes": num_classes, "chance": chance},
    )
