"""What every granularity implements: plan, sparsify, count, describe.

The loop, the probe and the artifact hold a `Granularity` and call these methods; none of them
tests a granularity's name. A new granularity is a subclass plus one line in
`core.registries.GRANULARITIES`; it is built as `cls(name)` with the name the spec gave.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from core.masks import measured_sparsity, prunable_parameters, unstructured_masks
from core.spec import PruneSpec


@dataclass
class SparsityPlan:
    """Per-run facts the sparsifier needs beyond the scores; saved in every checkpoint.

    `layer_order`: the layers that can take the pattern, least to most sensitive first (N:M
    applies the pattern to a growing prefix of it). `sensitivity`: per-layer sensitivities
    for the "sensitivity" scope. `dense_widths`/`dense_params`: the channel pruner's reference
    point; `channel_fixed`: layers whose channels stay; `skipped`: name -> why it was skipped.
    """

    layer_order: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    dense_widths: dict[str, int] | None = None
    channel_fixed: list[str] = field(default_factory=list)
    dense_params: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Granularity:
    """A way of zeroing or removing weights; subclasses override `sparsify` and what differs.

    `changes_shapes`: sparsifying replaces parameters (the optimizer is rebuilt and sparsity is
    counted in removed parameters). `orders_layers`: the run needs layers ordered by sensitivity
    whatever the scope (a pattern applied to a growing set of layers). `rebuilds_model`: the
    job rebuilds a Hugging Face model smaller in one cut (`core.hf.shrink.job`) instead of
    running the iterative loop.
    """

    changes_shapes: ClassVar[bool] = False
    orders_layers: ClassVar[bool] = False
    rebuilds_model: ClassVar[bool] = False

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(
        self,
        model: nn.Module,
        *,
        target: float,
        spec: PruneSpec,
        plan: SparsityPlan,
        example_inputs: Tensor,
    ) -> float:
        """Check that `target` can be met on `model`; return the target the run aims at.

        Raises:
            SpecInvalid: this granularity can prune nothing of this model.
        """
        return target

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
        """Bring `model` to `target` in place; return the masks now in force."""
        raise NotImplementedError

    @torch.no_grad()
    def layer_trial_mask(self, name: str, score: Tensor, *, spec: PruneSpec) -> Tensor:
        """The mask a sensitivity probe applies to layer `name` alone (default: unstructured
        at the target sparsity by the layer's own scores)."""
        return unstructured_masks(
            {name: score},
            sparsity=spec.target,
            scope="layer",
            min_density=spec.min_layer_density,
        )[name]

    def count(self, model: nn.Module, *, plan: SparsityPlan) -> tuple[float, dict[str, float]]:
        """Sparsity counted from the weights: overall and per layer."""
        return measured_sparsity({k: v.detach() for k, v in prunable_parameters(model).items()})

    def skipped_layers(self, model: nn.Module, *, plan: SparsityPlan) -> dict[str, str]:
        """Prunable layers this granularity leaves alone, each with the reason."""
        return dict(plan.skipped)

    def describe(self, model: nn.Module, *, plan: SparsityPlan) -> dict[str, Any]:
        """What the manifest says about this granularity: its name and the skipped layers."""
        return {
            "granularity": self.name,
            "skipped_layers": [
                {"name": name, "reason": reason}
                for name, reason in self.skipped_layers(model, plan=plan).items()
            ],
        }

    def kernel_report(self, model: nn.Module, *, device: torch.device) -> dict[str, Any] | None:
        """Measured sparse-kernel timings where the pattern has a kernel; None otherwise."""
        return None
