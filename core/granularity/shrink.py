"""Width and depth: a Hugging Face transformer rebuilt smaller (`core.hf.shrink`), in one cut.

These granularities do not run in the iterative loop: `rebuilds_model` sends the job to
`core.hf.shrink.job`, which prunes once, recovers by fine-tuning and exports. Here they state
what the artifact needs: parameters are removed (sparsity is the removed fraction) and there
is no sparse kernel to report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from core.errors import SpecInvalid
from core.granularity.base import Granularity, SparsityPlan
from core.spec import PruneSpec

if TYPE_CHECKING:
    from core.hf.shrink.slicing import Shrunk


class ShrinkGranularity(Granularity):
    """Pruning that rebuilds a Hugging Face model smaller; subclasses say how (`shrink`)."""

    changes_shapes: ClassVar[bool] = True
    rebuilds_model: ClassVar[bool] = True

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
        raise SpecInvalid(
            f"granularity {self.name!r} rebuilds a Hugging Face model in one cut; "
            "it runs through core.hf.shrink.job, not the iterative loop"
        )

    def shrink(
        self,
        model: nn.Module,
        *,
        spec: PruneSpec,
        batches: Sequence[Tensor],
        forward: Callable[[Tensor], Any],
        device: torch.device,
    ) -> Shrunk:
        """The smaller model built from `model` (left unchanged) at `spec.target`."""
        raise NotImplementedError


class WidthGranularity(ShrinkGranularity):
    """Fewer heads, MLP channels and (with `prune.hidden`) hidden entries (Minitron)."""

    def shrink(
        self,
        model: nn.Module,
        *,
        spec: PruneSpec,
        batches: Sequence[Tensor],
        forward: Callable[[Tensor], Any],
        device: torch.device,
    ) -> Shrunk:
        from core.hf.shrink.width import width_prune

        return width_prune(
            model,
            target=spec.target,
            round_to=spec.round_to,
            hidden=spec.hidden,
            batches=batches,
            forward=forward,
        )


class DepthGranularity(ShrinkGranularity):
    """Fewer blocks, those of lowest block influence (ShortGPT)."""

    def shrink(
        self,
        model: nn.Module,
        *,
        spec: PruneSpec,
        batches: Sequence[Tensor],
        forward: Callable[[Tensor], Any],
        device: torch.device,
    ) -> Shrunk:
        from core.hf.shrink.depth import depth_prune

        return depth_prune(model, target=spec.target, batches=batches, device=device)
