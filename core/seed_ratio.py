"""The seed ratio criterion: I = g / (g + alpha * a) with threshold gamma (the design
document's rule; its worked example g=5, a=10, alpha=1 gives I = 0.33, pruned at gamma 0.5).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import overload

import torch
from torch import Tensor

from core.importance import (
    ScoringContext,
    _activation_scores,
    _collect,
    _per_layer_mean_normalised,
)
from core.spec import PruneSpec


@overload
def seed_ratio(g: float, a: float, alpha: float) -> float: ...
@overload
def seed_ratio(g: Tensor, a: Tensor, alpha: float) -> Tensor: ...
def seed_ratio(g: Tensor | float, a: Tensor | float, alpha: float) -> Tensor | float:
    """The seed document's ratio I = g / (g + alpha * a), with I = 0 where g = a = 0.

    Args:
        g: gradient contribution (>= 0).
        a: activation contribution (>= 0).
        alpha: weight of the activation part (> 0).

    Returns:
        I in [0, 1], a float for float inputs, else a tensor.
    """
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha!r}")
    if isinstance(g, Tensor) and isinstance(a, Tensor):
        total = g + alpha * a
        tiny = torch.finfo(total.dtype).tiny
        return torch.where(total > 0, g / total.clamp_min(tiny), 0.0)
    if isinstance(g, Tensor) or isinstance(a, Tensor):
        raise ValueError("g and a must both be tensors or both be numbers")
    if g < 0 or a < 0:
        raise ValueError(f"g and a must be >= 0, got g={g!r}, a={a!r}")
    denominator = g + alpha * a
    return g / denominator if denominator > 0 else 0.0


@overload
def is_pruned_by_threshold(ratio: float, gamma: float) -> bool: ...
@overload
def is_pruned_by_threshold(ratio: Tensor, gamma: float) -> Tensor: ...
def is_pruned_by_threshold(ratio: Tensor | float, gamma: float) -> Tensor | bool:
    """The seed rule: a weight is prunable when I < gamma."""
    if isinstance(ratio, Tensor):
        return ratio < gamma
    return ratio < gamma


def fraction_below_threshold(scores: Mapping[str, Tensor], gamma: float) -> float:
    """Fraction of all weights whose seed ratio I is below gamma (the rule's own prune set)."""
    total = sum(score.numel() for score in scores.values())
    below = sum(int((score < gamma).sum().item()) for score in scores.values())
    return below / total if total else 0.0


class SeedRatioImportance:
    """The seed document's rule: I = g / (g + alpha * a); a weight with I < gamma is pruned.

    g is the gradient contribution (Taylor, sum_b |w * dL_b/dw|) and a the activation
    contribution (|w| * ||x_j||_2), each divided by its per-layer mean so alpha is scale free;
    I = 0 where both are 0. The rule splits the weights in two; the scheduled sparsity decides
    how many are pruned, so the ranking score puts every weight the rule prunes below every
    weight it keeps, and orders each group by the weight's combined contribution
    c = (g + alpha * a) / (1 + alpha):

        score = [I >= gamma] + c / (1 + c)        (in [0, 2); below 1 <=> I < gamma)

    Ranking by I alone ignores how much a weight contributes at all (I is a ratio): at 95 %
    sparsity on breast_cancer it lost 3 points to this gated score (docs/benchmarks.md).
    """

    name = "seed_ratio"

    def __init__(self, alpha: float = 1.0, gamma: float = 0.5) -> None:
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha!r}")
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma!r}")
        self.alpha = alpha
        self.gamma = gamma

    @classmethod
    def from_spec(cls, spec: PruneSpec) -> SeedRatioImportance:
        return cls(alpha=spec.seed_alpha, gamma=spec.seed_gamma)

    def _contributions(self, ctx: ScoringContext) -> Iterator[tuple[str, Tensor, Tensor]]:
        stats = _collect(ctx, gradients=True, activations=True)
        activation = _activation_scores(ctx, stats.input_norms)
        for name in ctx.params:
            yield (
                name,
                _per_layer_mean_normalised(stats.taylor.pop(name)),
                _per_layer_mean_normalised(activation.pop(name)),
            )

    def ratios(self, ctx: ScoringContext) -> dict[str, Tensor]:
        """I per weight, for reporting (e.g. with `fraction_below_threshold`)."""
        return {name: seed_ratio(g, a, self.alpha) for name, g, a in self._contributions(ctx)}

    def gated(self, g: Tensor, a: Tensor) -> Tensor:
        """The ranking score [I >= gamma] + c / (1 + c) from per-layer-normalised g and a."""
        kept = (seed_ratio(g, a, self.alpha) >= self.gamma).float()
        contribution = (g + self.alpha * a) / (1.0 + self.alpha)
        return kept + contribution / (1.0 + contribution)

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        return {name: self.gated(g, a) for name, g, a in self._contributions(ctx)}
