"""The one-shot methods without weight update: magnitude and Wanda.

Each method prunes one layer's (out, in) weight matrix given the statistics of its calibration
inputs and returns the pruned matrix; SparseGPT (`core.oneshot.sparsegpt`) has the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from torch import Tensor

from core.oneshot.selection import Group, choose_mask
from core.oneshot.stats import InputStats

if TYPE_CHECKING:
    from core.oneshot.config import OneShotConfig


@dataclass(frozen=True)
class LayerTarget:
    """What one layer is pruned to: a sparsity, or an N:M pattern, and the comparison group."""

    sparsity: float
    nm: tuple[int, int] | None = None
    group: Group | None = None


class OneShotMethod(Protocol):
    """A layer-wise method: `prune(weight, stats, target)` -> the pruned (out, in) matrix."""

    name: ClassVar[str]
    needs_inputs: ClassVar[bool]
    needs_hessian: ClassVar[bool]

    def prune(self, weight: Tensor, stats: InputStats | None, target: LayerTarget) -> Tensor: ...


class _NoSettings:
    @classmethod
    def from_config(cls, config: OneShotConfig) -> _NoSettings:
        """Built with no arguments: the method has no settings of its own."""
        return cls()


class MagnitudeOneShot(_NoSettings):
    """Magnitude pruning in one shot: score |W_ij|; by default compared over the whole layer
    (the baseline of Sun et al. 2023 and Frantar & Alistarh 2023)."""

    name: ClassVar[str] = "magnitude"
    needs_inputs: ClassVar[bool] = False
    needs_hessian: ClassVar[bool] = False
    default_group: ClassVar[Group] = "layer"

    def prune(self, weight: Tensor, stats: InputStats | None, target: LayerTarget) -> Tensor:
        mask = choose_mask(
            weight.abs(), target.sparsity, nm=target.nm, group=target.group or self.default_group
        )
        return weight.masked_fill(mask, 0.0)


class WandaOneShot(_NoSettings):
    """Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for Large Language
    Models", arXiv 2306.11695): score S_ij = |W_ij| * ||X_j||_2 over the calibration tokens,
    compared within each output row by default, no weight update."""

    name: ClassVar[str] = "wanda"
    needs_inputs: ClassVar[bool] = True
    needs_hessian: ClassVar[bool] = False
    default_group: ClassVar[Group] = "row"

    def prune(self, weight: Tensor, stats: InputStats | None, target: LayerTarget) -> Tensor:
        if stats is None:
            raise ValueError("wanda needs the layer's calibration inputs")
        scores = wanda_scores(weight, stats)
        mask = choose_mask(
            scores, target.sparsity, nm=target.nm, group=target.group or self.default_group
        )
        return weight.masked_fill(mask, 0.0)


def wanda_scores(weight: Tensor, stats: InputStats) -> Tensor:
    """|W_ij| * ||X_j||_2, shaped like the (out, in) weight."""
    return weight.abs() * stats.norms().to(weight.device).unsqueeze(0)
