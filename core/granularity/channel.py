"""Channel granularity: output channels removed physically (a smaller dense model, no masks).

Calls `core.structured.prune_channels`; the classifier, LSTMs and attention widths keep their
channels, and `describe` lists them with the reason.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor, nn

from core.errors import SpecInvalid
from core.granularity.base import Granularity, SparsityPlan, count_params
from core.masks import prunable_parameters
from core.spec import PruneSpec
from core.structured import out_width, prune_channels


def channel_fraction_removed(model: nn.Module, plan: SparsityPlan) -> float:
    """Fraction of the prunable layers' dense output channels that are gone, counted now."""
    widths = {k: v for k, v in (plan.dense_widths or {}).items() if k not in plan.channel_fixed}
    if not widths:
        return 0.0
    modules = dict(model.named_modules())
    now = sum(out_width(modules[name]) for name in widths)
    return 1.0 - now / sum(widths.values())


class ChannelGranularity(Granularity):
    changes_shapes: ClassVar[bool] = True

    def plan(
        self,
        model: nn.Module,
        *,
        target: float,
        spec: PruneSpec,
        plan: SparsityPlan,
        example_inputs: Tensor,
    ) -> float:
        """Refuse a channel job that cannot remove a single channel at its target."""
        trial, trial_plan = copy.deepcopy(model), copy.deepcopy(plan)
        scores = {k: v.detach().abs() for k, v in prunable_parameters(trial).items()}
        self.sparsify(
            trial,
            scores=scores,
            target=target,
            spec=spec,
            masks={},
            plan=trial_plan,
            example_inputs=example_inputs,
        )
        if channel_fraction_removed(trial, trial_plan) <= 0.0:
            raise SpecInvalid(
                f"granularity 'channel': no channel of this model can be removed at target "
                f"{target} with round_to {spec.round_to} "
                f"(kept whole: {', '.join(trial_plan.channel_fixed) or 'none'})"
            )
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
        """Remove `target` of the dense output channels of every layer that may lose some."""
        report = prune_channels(
            model,
            example_inputs=example_inputs,
            scores=scores,
            ratio=target,
            dense_widths=plan.dense_widths,
            round_to=spec.round_to,
        )
        plan.dense_widths = report.dense_widths
        plan.channel_fixed = sorted({entry.split(":", 1)[0] for entry in report.skipped})
        plan.skipped = {}
        for entry in report.skipped:
            name, _, reason = entry.partition(":")
            plan.skipped.setdefault(name.strip(), reason.strip())
        return {}

    def count(self, model: nn.Module, *, plan: SparsityPlan) -> tuple[float, dict[str, float]]:
        """The fraction of the dense model's parameters removed (no per-layer figures)."""
        removed = 1.0 - count_params(model) / plan.dense_params if plan.dense_params else 0.0
        return removed, {}
