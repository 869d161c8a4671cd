"""Physical channel pruning: remove whole channels and round widths to hardware-friendly multiples.

Coupled channels (residual additions, BatchNorm after a convolution, a Linear after Flatten, the
channels of a depthwise convolution and its groups) are found by Torch-Pruning's dependency graph
(Fang et al., "DepGraph: Towards Any Structural Pruning", CVPR 2023); this module decides how many
channels each group keeps and which ones, from per-weight scores computed elsewhere.

Attention projections of modules that declare their head count (Hugging Face encoders) lose whole
heads (`core.structured.heads`). Layers that are never pruned on their output side: the final
classifier (its outputs are the logits), anything the caller names in `ignored`, LSTMs
(Torch-Pruning's LSTM pruner produces tensors of the wrong shape), `nn.MultiheadAttention`, and
attention projections of modules that declare no head count (any group whose channels flow
through a batched matrix product): removing the same indices from q, k and v would shift head
boundaries. The width feeding attention projections (a transformer's embedding/residual width) is
kept too, because attention code commonly reshapes with the input width (``y.view(b, t, c)``).
Feed-forward hidden widths are pruned. Input sides of fixed layers still follow the layer before
them (an LSTM's inputs shrink with the layer feeding it).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import torch
import torch_pruning as tp
from torch import Tensor, nn

from core.errors import PruningError
from core.structured.group_scores import ScoreImportance
from core.structured.heads import (
    HeadLayout,
    head_channels_to_drop,
    head_layout,
    head_projections,
    heads_to_keep,
    set_head_count,
)
from core.structured.layers import (
    PRUNABLE,
    check_scores,
    dense_widths_of,
    fixed_layers,
    out_width,
    round_width,
    trace_output,
)

# autograd nodes that mix channels across a batched matrix product (attention scores, attn @ v)
_ATTENTION_OPS = ("Bmm", "Baddbmm", "ScaledDotProduct")


@dataclass
class ChannelPruneReport:
    """What `prune_channels` did.

    `dense_widths` are the output widths the first call saw (pass them back on later calls);
    `widths` are the output widths now; `skipped` lists `"name: reason"` for layers whose output
    channels were left alone.
    """

    dense_widths: dict[str, int]
    widths: dict[str, int]
    params_before: int
    params_after: int
    skipped: list[str] = field(default_factory=list)


def prune_channels(
    model: nn.Module,
    *,
    example_inputs: Tensor,
    scores: Mapping[str, Tensor],
    ratio: float,
    dense_widths: Mapping[str, int] | None,
    round_to: int,
    ignored: Collection[str] = (),
) -> ChannelPruneReport:
    """Physically remove the least important output channels of every prunable layer, in place.

    Each layer (Conv, Linear, LSTM) keeps ``round_width(dense * (1 - ratio), multiple=round_to,
    maximum=current)`` output channels, where `dense` is its width in `dense_widths` (or now, on
    the first call). A layer is only cut when it is wider than that target, so calls with growing
    ratios only ever shrink the model. Channels coupled through the dependency graph are removed
    together; they are ranked by the group score of `ScoreImportance`. Attention projections of
    modules that declare a head count keep ``max(1, ceil(dense_heads * (1 - ratio)))`` whole heads.

    Args:
        model: the model to prune in place.
        example_inputs: a batch used to trace the dependency graph (run in eval mode).
        scores: per-weight importance keyed by state-dict name, same shapes as the weights.
        ratio: fraction of each layer's dense output channels to remove in total, in [0, 1).
        dense_widths: the report's `dense_widths` from the first call, or None on the first call.
        round_to: kept widths are multiples of this (at least one multiple).
        ignored: module names whose output channels must not be pruned (their submodules too).

    Returns:
        A ChannelPruneReport with the dense and current widths, parameter counts and skips.

    Raises:
        ValueError: for a bad ratio, round_to, score name or shape, ignored name or dense width.
        PruningError: if the pruned model no longer produces outputs of the original shape.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio!r}")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to!r}")
    modules = dict(model.named_modules())
    check_scores(model, scores)
    for name in ignored:
        if name not in modules:
            raise ValueError(f"ignored module {name!r} is not in the model")
    prunable = {name: m for name, m in modules.items() if isinstance(m, PRUNABLE)}
    dense = dense_widths_of(prunable, dense_widths)
    params_before = sum(p.numel() for p in model.parameters())

    modes = {m: m.training for m in model.modules()}
    model.eval()  # tracing must not move BatchNorm running statistics
    try:
        out_before, classifier = trace_output(model, example_inputs, prunable)
        skips = fixed_layers(prunable, modules, classifier=classifier, ignored=ignored)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        names = {module: name for name, module in modules.items()}
        importance = ScoreImportance(graph=graph, names=names, scores=scores)
        fixed = [modules[name] for name in skips]
        groups = list(graph.get_all_groups(ignored_layers=fixed, root_module_types=PRUNABLE))
        plans = _plan(graph, groups, names=names, projections=head_projections(model), skips=skips)
        for plan in plans:
            _cut(graph, plan, importance=importance, dense=dense, ratio=ratio, round_to=round_to)
            if not plan.applied:
                skips.update({n: "dependency graph refused the cut" for n in plan.coupled})
        with torch.no_grad():
            out_after = model(example_inputs)
    finally:
        for module, training in modes.items():
            module.train(training)
    if isinstance(out_before, Tensor) and (
        not isinstance(out_after, Tensor) or out_after.shape != out_before.shape
    ):
        raise PruningError(
            f"channel pruning changed the output shape from {tuple(out_before.shape)}"
            f" to {getattr(out_after, 'shape', type(out_after).__name__)}"
        )
    return ChannelPruneReport(
        dense_widths=dense,
        widths={name: out_width(m) for name, m in prunable.items()},
        params_before=params_before,
        params_after=sum(p.numel() for p in model.parameters()),
        skipped=[f"{name}: {reason}" for name, reason in sorted(skips.items())],
    )


@dataclass
class _GroupPlan:
    """One dependency group to cut: its root layer, handler, coupled output layers, heads."""

    root: nn.Module
    handler: object
    coupled: list[str]
    heads: HeadLayout | None
    applied: bool = True


def _plan(
    graph: tp.DependencyGraph,
    groups: list[tp.dependency.Group],
    *,
    names: Mapping[nn.Module, str],
    projections: dict[nn.Module, nn.Module],
    skips: dict[str, str],
) -> list[_GroupPlan]:
    """The groups to cut; the attention groups that cannot be cut go into `skips`."""
    outputs = [[d.target.module for d, _ in g if _is_out(graph, d)] for g in groups]
    layouts = [head_layout(layers, projections) for layers in outputs]
    attention = {
        m
        for group, layers, layout in zip(groups, outputs, layouts, strict=True)
        if layout is not None or _is_attention(group)
        for m in layers
    }
    plans = []
    for group, layers, layout in zip(groups, outputs, layouts, strict=True):
        coupled = [names[m] for m in layers]
        if layout is None and any(d.target.module in attention for d, _ in group):
            # models reshape attention inputs/outputs with their own widths (view(b, t, c))
            reason = "attention projection or its input width (head structure)"
            skips.update({n: reason for n in coupled})
            continue
        plans.append(_GroupPlan(group[0].dep.target.module, group[0].dep.handler, coupled, layout))
    return plans


def _cut(
    graph: tp.DependencyGraph,
    plan: _GroupPlan,
    *,
    importance: ScoreImportance,
    dense: Mapping[str, int],
    ratio: float,
    round_to: int,
) -> None:
    """Remove the lowest-scored channels (or heads) of one group down to its target width."""
    current = int(graph.get_out_channels(plan.root))
    layout = plan.heads
    if layout is not None:
        keep = heads_to_keep(dense[plan.coupled[0]] // layout.head_dim, ratio)
        heads_now = current // layout.head_dim
        if heads_now <= keep:
            return
    else:
        target = min(
            round_width(dense[n] * (1.0 - ratio), multiple=round_to, maximum=current)
            for n in plan.coupled
            if n in dense
        )
        if current <= target:
            return
    full = graph.get_pruning_group(plan.root, plan.handler, list(range(current)))
    group_scores = importance(full)
    if layout is not None:
        drop = head_channels_to_drop(
            group_scores, heads=heads_now, head_dim=layout.head_dim, keep=keep
        )
    else:
        order = torch.argsort(group_scores, stable=True)
        drop = sorted(int(i) for i in order[: current - target])
    group = graph.get_pruning_group(plan.root, plan.handler, drop)
    if not graph.check_pruning_group(group):
        plan.applied = False
        return
    group.prune()
    if layout is not None:
        set_head_count(layout, keep)


def _is_out(graph: tp.DependencyGraph, dep: tp.Dependency) -> bool:
    """Whether `dep` removes output channels of a Conv, Linear or LSTM."""
    return isinstance(dep.target.module, PRUNABLE) and bool(
        graph.is_out_channel_pruning_fn(dep.handler)
    )


def _is_attention(group: tp.dependency.Group) -> bool:
    for item in group:
        grad_fn = getattr(item.dep.target, "grad_fn", None)
        kind = type(grad_fn).__name__ if grad_fn is not None else ""
        if any(op in kind for op in _ATTENTION_OPS):
            return True
    return False
