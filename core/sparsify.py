"""One pruning action at one sparsity, for every granularity: scores in, sparser model out.

Unstructured and N:M granularities return masks over the prunable weights; channel granularity
removes channels physically (Torch-Pruning) and returns no masks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from torch import Tensor, nn

from core.masks import (
    apply_masks,
    measured_sparsity,
    nm_incompatible,
    nm_masks,
    prunable_parameters,
    sensitivity_allocation,
    unstructured_masks,
)
from core.spec import PruneSpec, parse_nm
from core.structured import count_params as count_params
from core.structured.target import prune_channels_to_fraction


@dataclass
class SparsityPlan:
    """Per-run facts the sparsifier needs beyond the scores.

    `layer_order`: the layers that can take the pattern, least to most sensitive first (N:M
    applies the pattern to a growing prefix of it). `sensitivity`: per-layer sensitivities
    for the "sensitivity" scope.
    `dense_widths`/`dense_params`: the channel pruner's reference point.
    """

    layer_order: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    dense_widths: dict[str, int] | None = None
    channel_fixed: list[str] = field(default_factory=list)
    dense_params: int = 0


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


def sparsify(
    model: nn.Module,
    *,
    scores: Mapping[str, Tensor],
    target: float,
    spec: PruneSpec,
    masks: Mapping[str, Tensor],
    plan: SparsityPlan,
    example_inputs: Tensor,
) -> dict[str, Tensor]:
    """Bring `model` to `target` sparsity in place; return the masks now in force.

    For channel granularity `target` is the fraction of the dense model's parameters to have
    removed; the channel ratio that achieves it is searched (the classifier, LSTMs and attention
    widths keep their output channels).
    """
    if spec.granularity == "channel":
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
        return {}
    params = prunable_parameters(model)
    nm = parse_nm(spec.granularity)
    if nm is not None:
        numel = {name: p.numel() for name, p in params.items()}
        layers = nm_layers_for(
            target, order=plan.layer_order, numel=numel, pattern_sparsity=1 - nm[0] / nm[1]
        )
        new = nm_masks(scores, n=nm[0], m=nm[1], previous=masks or None, layers=layers)
    elif spec.scope == "sensitivity":
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


def model_sparsity(
    model: nn.Module, *, spec: PruneSpec, plan: SparsityPlan
) -> tuple[float, dict[str, float]]:
    """Sparsity counted from the weights: zeros among prunable weights, or parameters removed."""
    if spec.granularity == "channel":
        removed = 1.0 - count_params(model) / plan.dense_params if plan.dense_params else 0.0
        return removed, {}
    return measured_sparsity({k: v.detach() for k, v in prunable_parameters(model).items()})
