"""How sparse each block is: the same everywhere, or OWL's outlier-weighted allocation.

OWL (Yin et al. 2023, "Outlier Weighed Layerwise Sparsity (OWL): A Missing Secret Sauce for
Pruning LLMs to High Sparsity", arXiv 2310.05065): a block's outlier ratio D_l is the fraction
of its Wanda scores |W_ij| * ||X_j|| (all its layers together) above M times their mean. Blocks
with more outliers keep more weights: with D'_l = 2 lambda (D_l - min D) / (max D - min D),
S_l = target - (D'_l - mean D'), so the mean of S_l is the target and the spread is 2 lambda.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

if TYPE_CHECKING:
    from core.oneshot.config import OneShotConfig


def outlier_ratio(scores: Sequence[Tensor], threshold: float) -> float:
    """Fraction of the entries of all `scores` above `threshold` times their common mean."""
    flat = torch.cat([score.reshape(-1).to(torch.float64) for score in scores])
    return float((flat > threshold * flat.mean()).to(torch.float64).mean())


def owl_sparsities(ratios: Sequence[float], target: float, spread: float) -> list[float]:
    """S_l = target - (D'_l - mean D'), D' the outlier ratios rescaled to [0, 2 * spread].

    Equal ratios (or one block) give the target everywhere.

    Raises:
        ValueError: a block's sparsity would leave [0, 1).
    """
    values = torch.tensor(list(ratios), dtype=torch.float64)
    span = float(values.max() - values.min()) if len(values) else 0.0
    if span <= 0.0:
        return [target] * len(values)
    scaled = (values - values.min()) / span * (2.0 * spread)
    sparsities = target - (scaled - scaled.mean())
    if float(sparsities.min()) < 0.0 or float(sparsities.max()) >= 1.0:
        raise ValueError(
            f"OWL with lambda {spread} around target {target} gives sparsities outside [0, 1); "
            "lower owl_lambda"
        )
    return [float(value) for value in sparsities]


class UniformAllocation:
    """Every block at the target sparsity."""

    name: ClassVar[str] = "uniform"
    needs_inputs: ClassVar[bool] = False

    @classmethod
    def from_config(cls, config: OneShotConfig) -> UniformAllocation:
        return cls()

    def sparsities(self, target: float, ratios: Sequence[float] | None, blocks: int) -> list[float]:
        return [target] * blocks


class OwlAllocation:
    """OWL: per-block sparsity from the dense model's outlier ratios (see the module docstring)."""

    name: ClassVar[str] = "owl"
    needs_inputs: ClassVar[bool] = True

    def __init__(self, threshold: float = 5.0, spread: float = 0.08) -> None:
        if threshold <= 0:
            raise ValueError(f"owl threshold M must be positive, got {threshold}")
        if not 0.0 <= spread < 0.5:
            raise ValueError(f"owl lambda must be in [0, 0.5), got {spread}")
        self.threshold = threshold
        self.spread = spread

    @classmethod
    def from_config(cls, config: OneShotConfig) -> OwlAllocation:
        return cls(config.owl_threshold, config.owl_lambda)

    def sparsities(self, target: float, ratios: Sequence[float] | None, blocks: int) -> list[float]:
        if ratios is None or len(ratios) != blocks:
            raise ValueError("owl needs one outlier ratio per block")
        return owl_sparsities(ratios, target, self.spread)
