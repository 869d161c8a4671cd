"""Whether a run reached what it was asked, and why not, in words; the curve it found."""

from __future__ import annotations

from collections.abc import Sequence

from core.report import StepReport
from core.spec import JobSpec

# the decisions of steps the run built on (the baseline is not a step)
ACCEPTED_STEPS = ("accelerate", "keep", "shrink", "provisional", "scheduled")
_ACCEPTED = ("baseline", *ACCEPTED_STEPS)


def accepted_target(reports: Sequence[StepReport]) -> float:
    """The sparsity the last accepted step asked for (0 before any)."""
    accepted = [r for r in reports if r.decision in _ACCEPTED]
    return accepted[-1].target_sparsity if accepted else 0.0


def accepted_curve(reports: Sequence[StepReport]) -> list[dict[str, float]]:
    """The accepted (sparsity, metric) points in step order, the dense baseline first."""
    return [
        {
            "step": report.step,
            "target_sparsity": report.target_sparsity,
            "sparsity": report.sparsity,
            "metric": report.metric,
        }
        for report in reports
        if report.decision in _ACCEPTED
    ]


def missed_reason(
    reports: Sequence[StepReport],
    *,
    spec: JobSpec,
    target: float,
    stop_reason: str,
    dense_metric: float,
    within: bool,
) -> str | None:
    """None when the run reached its target within tolerance, else the reason in words.

    A number target is reached when the last accepted step asked for it (or the final row, after
    a final push that reached it) and the final metric is
    within `max_metric_drop`; `max` is reached when the search converged (no headroom left, or
    `max_sparsity` accepted) within tolerance. Example: "no_headroom at 0.66: step 4 at 0.72
    cost 3.1 points (allowed 3)".
    """
    if not reports:
        return f"{stop_reason}: no step was taken"
    last = reports[-1]
    at = f"{last.sparsity:.3f}"
    allowed = f"{100 * spec.prune.max_metric_drop:g}"
    if not within:
        cost = 100 * (dense_metric - last.metric)
        return (
            f"over_tolerance at {at}: the final metric is {cost:.1f} points below dense "
            f"(allowed {allowed})"
        )
    if last.decision == "final":  # the final row states the sparsity it fine-tuned at
        asked = last.target_sparsity
    else:
        accepted = [r for r in reports if r.decision in _ACCEPTED and r.decision != "baseline"]
        asked = accepted[-1].target_sparsity if accepted else 0.0
    if spec.prune.search_max:
        if stop_reason in ("no_headroom", "target_reached"):
            return None
    elif asked >= target - 1e-6:
        return None
    goal = "the highest sparsity within tolerance" if spec.prune.search_max else f"{target:.2f}"
    rollbacks = [r for r in reports if r.decision == "rollback"]
    if stop_reason == "no_headroom" and rollbacks:
        failed = rollbacks[-1]
        cost = 100 * (dense_metric - failed.metric)
        return (
            f"no_headroom at {at}: step {failed.step} at {failed.target_sparsity:.2f} cost "
            f"{cost:.1f} points (allowed {allowed})"
        )
    if stop_reason == "max_epochs":
        return (
            f"max_epochs at {at}: the budget of {spec.budget.max_epochs} fine-tuning epochs was "
            f"spent before {goal}"
        )
    if stop_reason == "max_runtime":
        return (
            f"max_runtime at {at}: the budget of {spec.budget.max_runtime_s:g} s was spent "
            f"before {goal}"
        )
    if stop_reason == "step_limit":
        steps = sum(1 for r in reports if r.decision not in ("baseline", "final"))
        return f"step_limit at {at}: {steps} steps were taken before {goal}"
    return f"{stop_reason} at {at}: {goal} was not reached"
