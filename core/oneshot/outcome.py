"""A one-shot job's outcome: the tolerance in the metric's direction, the result in words,
and what the manifest records of the run."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from core.controller import over_tolerance
from core.hf.adapter import HFAdapter
from core.metrics import Metric, is_relative, worse_by
from core.oneshot.blocks import is_prunable
from core.oneshot.engine import OneShotResult
from core.outcome import accepted_curve
from core.report import PruneResult, StepReport, StopReason
from core.spec import JobSpec

OUTSIDE_BLOCKS = "outside the transformer blocks: one-shot pruning leaves it dense"


class Tolerance:
    """The job's metric, its dense value and the one test of `max_metric_drop`."""

    def __init__(self, spec: JobSpec, metric: Metric, dense: float, examples: int) -> None:
        self.metric = metric
        self.dense = dense
        self.allowed = spec.prune.max_metric_drop
        self.examples = examples if getattr(metric, "counts_examples", False) else 0

    def drop(self, value: float) -> float:
        return worse_by(self.metric, reference=self.dense, value=value)

    def within(self, value: float) -> bool:
        return math.isfinite(value) and not over_tolerance(
            self.drop(value), self.allowed, self.examples
        )

    def describe(self, value: float) -> str:
        """e.g. "perplexity 12.1 is 21.0 % worse than dense 10.0 (allowed 2 %)"."""
        name = type(self.metric).__name__.lower()
        if is_relative(self.metric):
            return (
                f"{name} {value:.4g} is {100 * self.drop(value):.1f} % worse than dense "
                f"{self.dense:.4g} (allowed {100 * self.allowed:g} %)"
            )
        return (
            f"{name} {value:.4g} is {100 * self.drop(value):.1f} points worse than dense "
            f"{self.dense:.4g} (allowed {100 * self.allowed:g})"
        )


def _skipped(adapter: HFAdapter, blocks_path: str) -> list[dict[str, str]]:
    inside = f"hf.{blocks_path}."
    return [
        {"name": name, "reason": adapter.prune_excluded.get(name, OUTSIDE_BLOCKS)}
        for name, module in adapter.named_modules()
        if is_prunable(module) and not name.startswith(inside)
    ]


def oneshot_details(found: OneShotResult) -> dict[str, Any]:
    """What the manifest records of the one-shot run itself (per block: reconstruction error,
    activation bytes, peak device memory, sparsity; where a resumed run started)."""
    return {
        "config": found.config,
        "blocks_path": found.blocks_path,
        "block_sparsities": found.block_sparsities,
        "resumed_at": found.resumed_at,
        "stopped_at": found.stopped_at,
        "blocks": [
            {k: v for k, v in asdict(record).items() if k != "layers"} for record in found.blocks
        ],
    }


def oneshot_result(
    spec: JobSpec,
    *,
    found: OneShotResult,
    steps: list[StepReport],
    tolerance: Tolerance,
    metric: float,
    epochs: int,
    seconds: float,
    model: HFAdapter,
) -> PruneResult:
    """The run's PruneResult: `target_reached` when every block was pruned and the final
    `metric` is within tolerance; otherwise `target_missed_reason` says why, in words."""
    within = tolerance.within(metric)
    sparsity = steps[-1].sparsity if steps else 0.0
    stop_reason: StopReason = "schedule_done" if found.stopped_at is None else "max_runtime"
    reason: str | None = None
    if found.stopped_at is not None:
        reason = (
            f"max_runtime at {sparsity:.3f}: the budget of {spec.budget.max_runtime_s:g} s was "
            f"spent before block {found.stopped_at} of {len(found.block_sparsities)}"
        )
    elif not within:
        reason = f"over_tolerance at {sparsity:.3f}: {tolerance.describe(metric)}"
    best = max(
        [0.0]
        + [s.sparsity for s in steps if tolerance.within(s.metric) and s.decision == "scheduled"]
    )
    if within and found.stopped_at is None:
        best = max(best, sparsity)
    dense_point = {"step": 0, "target_sparsity": 0.0, "sparsity": 0.0, "metric": tolerance.dense}
    return PruneResult(
        criterion=str(spec.prune.method),
        dense_metric=tolerance.dense,
        metric=metric,
        sparsity=sparsity,
        best_sparsity_within_tolerance=best,
        within_tolerance=within,
        stop_reason=stop_reason,
        epochs=epochs,
        seconds=seconds,
        steps=steps,
        layer_sparsity={f"hf.{name}": value for name, value in found.layer_sparsity.items()},
        skipped_layers=_skipped(model, found.blocks_path),
        target_sparsity=spec.prune.target,
        target_reached=reason is None,
        target_missed_reason=reason,
        curve=[dense_point, *accepted_curve(steps)],
    )
