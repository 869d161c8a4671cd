"""Channel granularity: output channels removed physically (a smaller dense model, no masks).

`target_sparsity` is the fraction of the dense model's parameters removed: the channel ratio that
achieves it is searched (`core.structured.target`). The classifier's outputs, LSTMs and the
residual width beside attention keep their channels, and `describe` lists them with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from torch import Tensor, nn

from core.errors import SpecInvalid
from core.granularity.base import Granularity, SparsityPlan, count_params
from core.spec import PruneSpec
from core.structured.target import channel_reach, prune_channels_to_fraction


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
        """Refuse a channel job whose parameter target is out of reach, naming what blocks it."""
        reach = channel_reach(
            model,
            example_inputs=example_inputs,
            round_to=spec.round_to,
            dense_params=plan.dense_params or count_params(model),
        )
        problem = reach.refusal(target, round_to=spec.round_to)
        if problem is not None:
            raise SpecInvalid(problem)
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
        """Remove channels until `target` of the dense model's parameters are gone."""
        report, _ = prune_channels_to_fraction(
            model,
            example_inputs=example_inputs,
            scores=scores,
            fraction=target,
            dense_params=plan.dense_params or count_params(model),
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
