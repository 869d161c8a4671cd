"""Unstructured granularity: any weight may be zeroed; global, per-layer or sensitivity scope."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from core.granularity.base import Granularity, SparsityPlan
from core.masks import apply_masks, prunable_parameters, sensitivity_allocation, unstructured_masks
from core.spec import PruneSpec


class UnstructuredGranularity(Granularity):
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
        if spec.scope == "sensitivity":
            numel = {name: p.numel() for name, p in params.items()}
            allocation = sensitivity_allocation(
                sensitivity=plan.sensitivity,
                numel=numel,
                sparsity=target,
                min_density=spec.min_layer_density,
            )
            new = unstructured_masks(
                scores,
                sparsity=target,
                scope="layer",
                min_density=spec.min_layer_density,
                previous=masks or None,
                layer_sparsity=allocation,
            )
        else:
            new = unstructured_masks(
                scores,
                sparsity=target,
                scope="global" if spec.scope == "global" else "layer",
                min_density=spec.min_layer_density,
                previous=masks or None,
            )
        apply_masks(params, new)
        return new
