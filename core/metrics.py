"""Task metrics: how a score is computed from model outputs, and in which direction it is better.

Two shapes of metric:
- a per-example metric has `batch_total(logits, targets)`: the sum of a per-example score over
  a batch; the metric of a split is the sum over its batches divided by the number of examples
  (accuracy);
- an aggregate metric has `batch_stats(logits, targets)`, a vector of sums added up over the
  batches, and `value(stats)`, the metric from the split's sums (macro F1 from a confusion
  matrix, perplexity from summed token cross-entropy).
Every metric has a `name` and `higher_is_better`; `relative = True` makes `max_metric_drop` a
relative tolerance. Its registry line is in `core.registries.METRICS`.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from core.losses import cross_entropy_sum
from core.registries import METRICS


class PerExampleMetric(Protocol):
    name: str
    higher_is_better: bool

    def batch_total(self, logits: Tensor, targets: Tensor) -> float:
        """The per-example score summed over one batch."""
        ...


@runtime_checkable
class AggregateMetric(Protocol):
    name: str
    higher_is_better: bool

    def batch_stats(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Sums over one batch (float64 on the CPU, the same length for every batch)."""
        ...

    def value(self, stats: Tensor) -> float:
        """The metric of a split from the sums over all of its batches."""
        ...


Metric = PerExampleMetric | AggregateMetric


class Accuracy:
    """The fraction of examples whose highest logit is the true class."""

    name = "accuracy"
    higher_is_better = True
    counts_examples = True  # moves by 1/n: tolerances are compared in whole examples

    def batch_total(self, logits: Tensor, targets: Tensor) -> float:
        return float((logits.argmax(dim=-1) == targets).sum())


class F1Macro:
    """Macro-averaged F1: the unweighted mean over classes of 2 TP / (2 TP + FP + FN).

    Classes that neither occur in the targets nor are ever predicted are left out of the mean
    (they have no F1), as scikit-learn's `f1_score(average="macro")` does with its labels.
    """

    name = "f1_macro"
    higher_is_better = True

    def batch_stats(self, logits: Tensor, targets: Tensor) -> Tensor:
        classes = logits.shape[-1]
        pairs = targets.reshape(-1) * classes + logits.argmax(dim=-1).reshape(-1)
        counts = torch.bincount(pairs.cpu(), minlength=classes * classes)
        return counts.to(torch.float64)

    def value(self, stats: Tensor) -> float:
        classes = math.isqrt(stats.numel())
        confusion = stats.reshape(classes, classes)  # rows: true class, columns: predicted
        true_positive = confusion.diagonal()
        support = confusion.sum(dim=1)
        predicted = confusion.sum(dim=0)
        present = (support + predicted) > 0
        if not bool(present.any()):
            return 0.0
        f1 = 2 * true_positive / (support + predicted).clamp(min=1)
        return float(f1[present].mean())


class Perplexity:
    """exp of the mean token cross-entropy over the scored (non-padding) positions.

    Lower is better; `max_metric_drop` is the allowed relative increase: 0.02 accepts a
    pruned perplexity up to 1.02 x the dense one.
    """

    name = "perplexity"
    higher_is_better = False
    relative = True

    def batch_stats(self, logits: Tensor, targets: Tensor) -> Tensor:
        total, count = cross_entropy_sum(logits.float(), targets)
        return torch.tensor([total, count], dtype=torch.float64)

    def value(self, stats: Tensor) -> float:
        total, count = float(stats[0]), float(stats[1])
        return math.exp(total / count) if count > 0 else math.nan


def batch_stats(metric: Metric, logits: Tensor, targets: Tensor) -> Tensor:
    """One batch's sums for `metric` (for a per-example metric: [total, examples])."""
    if isinstance(metric, AggregateMetric):
        return metric.batch_stats(logits, targets).to(device="cpu", dtype=torch.float64)
    return torch.tensor(
        [metric.batch_total(logits, targets), targets.shape[0]], dtype=torch.float64
    )


def metric_value(metric: Metric, stats: Tensor | None) -> float:
    """The metric of a split from its summed `batch_stats` (None: an empty split)."""
    if isinstance(metric, AggregateMetric):
        return metric.value(stats) if stats is not None else math.nan
    if stats is None:
        return 0.0
    return float(stats[0]) / max(float(stats[1]), 1.0)


def make_metric(name: str) -> Metric:
    """The metric registered as `name`.

    Raises:
        ValueError: `name` is not a registered metric (the message lists them).
    """
    metric: Metric = METRICS.resolve(name)()
    return metric


def is_relative(metric: Metric) -> bool:
    """Whether `max_metric_drop` is relative for this metric (perplexity)."""
    return bool(getattr(metric, "relative", False))


def worse_by(metric: Metric, *, reference: float, value: float) -> float:
    """How much worse `value` is than `reference`: positive when worse, in either direction.

    For a relative metric it is the change as a fraction of the reference: perplexity 10.5
    against a dense 10.0 is worse by 0.05.
    """
    difference = reference - value if metric.higher_is_better else value - reference
    if is_relative(metric):
        if reference:
            return difference / abs(reference)
        return math.inf if difference > 0 else 0.0
    return difference
