"""Task metrics: how a score is computed from model outputs, and in which direction it is better.

A metric is a class with a `name`, `higher_is_better`, and `batch_total(logits, targets)`: the
sum of a per-example score over a batch; the metric of a split is the sum over its batches
divided by the number of examples. Its registry line is in `core.registries.METRICS`.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor

from core.registries import METRICS


class Metric(Protocol):
    name: str
    higher_is_better: bool

    def batch_total(self, logits: Tensor, targets: Tensor) -> float:
        """The per-example score summed over one batch."""
        ...


class Accuracy:
    """The fraction of examples whose highest logit is the true class."""

    name = "accuracy"
    higher_is_better = True
    counts_examples = True  # moves by 1/n: tolerances are compared in whole examples

    def batch_total(self, logits: Tensor, targets: Tensor) -> float:
        return float((logits.argmax(dim=-1) == targets).sum())


def make_metric(name: str) -> Metric:
    """The metric registered as `name`.

    Raises:
        ValueError: `name` is not a registered metric (the message lists them).
    """
    metric: Metric = METRICS.resolve(name)()
    return metric


def worse_by(metric: Metric, *, reference: float, value: float) -> float:
    """How much worse `value` is than `reference`: positive when worse, in either direction."""
    return reference - value if metric.higher_is_better else value - reference
