"""N:M granularity ("2:4", any N:M with 0 < N < M <= 32): N of every M consecutive inputs kept.

Layers whose input dimension is not a multiple of M stay dense; the pattern goes to a growing
prefix of the other layers, least sensitive first, until the overall target is reached.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from core.errors import SpecInvalid
from core.granularity.base import Granularity, SparsityPlan
from core.masks import apply_masks, nm_incompatible, nm_masks, prunable_parameters
from core.registries import parse_nm
from core.semistructured import measure_two_four
from core.spec import PruneSpec


def nm_layers_for(
    target: float, *, order: Sequence[str], numel: Mapping[str, int], pattern_sparsity: float
) -> list[str]:
    """The shortest prefix of `order` whose N:M pruning reaches `target` overall sparsity.

    The pattern on a set of layers L gives sparsity p * sum_L numel / total, with p = 1 - N/M.
    """
    total = sum(numel.values())
    needed = min(target / pattern_sparsity, 1.0) * total
    chosen: list[str] = []
    covered = 0
    for name in order:
        if covered >= needed - 1e-9:
            break
        chosen.append(name)
        covered += numel[name]
    return chosen


def nm_reachable(params: Mapping[str, Tensor], *, n: int, m: int) -> float:
    """The highest overall sparsity N:M can give: p * (weights in compatible layers) / total.

    A layer is compatible when its input dimension is a multiple of M; the others stay dense.
    """
    shapes = {name: list(p.shape) for name, p in params.items()}
    incompatible = set(nm_incompatible(shapes, m))
    total = sum(p.numel() for p in params.values())
    covered = sum(p.numel() for name, p in params.items() if name not in incompatible)
    return (1 - n / m) * covered / total if total else 0.0


class NMGranularity(Granularity):
    orders_layers: ClassVar[bool] = True

    def __init__(self, name: str) -> None:
        super().__init__(name)
        nm = parse_nm(name)
        if nm is None:
            raise ValueError(f"{name!r} is not an N:M pattern")
        self.n, self.m = nm

    def plan(
        self,
        model: nn.Module,
        *,
        target: float,
        spec: PruneSpec,
        plan: SparsityPlan,
        example_inputs: Tensor,
    ) -> float:
        reachable = nm_reachable(prunable_parameters(model), n=self.n, m=self.m)
        if reachable <= 0.0:
            raise SpecInvalid(
                f"granularity {self.name!r}: no prunable layer has an input "
                f"dimension divisible by {self.m}"
            )
        # layers that cannot take the pattern stay dense, so the target is what the rest give
        return min(target, reachable)

    def sparsify(
        self,
        model: nn.Module,
        *,
        scores: Mapping[str, Tensor],
        target: float,
        spec: PruneSpec,
        masks: Mapping[str, Tensor],
        plan: SparsityPlan,
        example_inputs: Tensor,
    ) -> dict[str, Tensor]:
        params = prunable_parameters(model)
        numel = {name: p.numel() for name, p in params.items()}
        layers = nm_layers_for(
            target, order=plan.layer_order, numel=numel, pattern_sparsity=1 - self.n / self.m
        )
        new = nm_masks(scores, n=self.n, m=self.m, previous=masks or None, layers=layers)
        apply_masks(params, new)
        return new

    @torch.no_grad()
    def layer_trial_mask(self, name: str, score: Tensor, *, spec: PruneSpec) -> Tensor:
        return nm_masks({name: score}, n=self.n, m=self.m)[name]

    def skipped_layers(self, model: nn.Module, *, plan: SparsityPlan) -> dict[str, str]:
        shapes = {name: list(p.shape) for name, p in prunable_parameters(model).items()}
        return {
            name: (
                f"input dimension {shapes[name][1]} is not a multiple of {self.m}"
                if len(shapes[name]) >= 2
                else "fewer than two dimensions"
            )
            for name in nm_incompatible(shapes, self.m)
        }

    def kernel_report(self, model: nn.Module, *, device: torch.device) -> dict[str, Any] | None:
        return measure_two_four(model, device=device)
