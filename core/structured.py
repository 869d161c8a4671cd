"""Physical channel pruning: remove whole channels and round widths to hardware-friendly multiples.

Coupled channels (residual additions, BatchNorm after a convolution, a Linear after Flatten) are
found by Torch-Pruning's dependency graph (Fang et al., "DepGraph: Towards Any Structural Pruning",
CVPR 2023); this module decides how many channels each group keeps and which ones, from per-weight
scores computed elsewhere.

Layers that are never pruned on their output side: the final classifier (its outputs are the
logits), anything the caller names in `ignored`, LSTMs (Torch-Pruning's LSTM pruner produces
tensors of the wrong shape), `nn.MultiheadAttention`, and attention projections built from
`nn.Linear` (any group whose channels flow through a batched matrix product): removing the same
indices from q, k and v would shift head boundaries, and keeping heads intact needs `num_heads`,
which a generic model does not declare. The width feeding those projections (a transformer's
embedding/residual width) is kept too, because attention code commonly reshapes with the input
width (``y.view(b, t, c)``). Feed-forward hidden widths are pruned. Input sides of fixed layers
still follow the layer before them (an LSTM's inputs shrink with the layer feeding it).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
import torch_pruning as tp
from torch import Tensor, nn

from core.errors import PruningError

_PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear, nn.LSTM)
# autograd nodes that mix channels across a batched matrix product (attention scores, attn @ v)
_ATTENTION_OPS = ("Bmm", "Baddbmm", "ScaledDotProduct")
_EPS = 1e-12


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


def round_width(width: float, *, multiple: int, maximum: int) -> int:
    """Round a channel width up to a hardware-friendly multiple.

    Formula: ``min(maximum, max(multiple, ceil(width / multiple) * multiple))``.

    Args:
        width: the unrounded width, e.g. ``dense * (1 - ratio)``.
        multiple: widths become multiples of this (8 suits tensor cores and SIMD lanes).
        maximum: the current width; the result never exceeds it.

    Returns:
        The width to keep.

    Raises:
        ValueError: for a negative width, a multiple below 1 or a maximum below 1.
    """
    if not math.isfinite(width) or width < 0:
        raise ValueError(f"width must be a finite number >= 0, got {width!r}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple!r}")
    if maximum < 1:
        raise ValueError(f"maximum must be >= 1, got {maximum!r}")
    # the small tolerance keeps 48.000000001 (float noise from dense * (1 - ratio)) at 48
    rounded = math.ceil(width / multiple - 1e-9) * multiple
    return min(maximum, max(multiple, rounded))


def shapes_of(model: nn.Module) -> dict[str, list[int]]:
    """Return the shape of every state-dict tensor (parameters and buffers) of `model`.

    Args:
        model: any module.

    Returns:
        State-dict key -> shape as a list of ints.
    """
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


def nonzero_params(model: nn.Module) -> int:
    """Count the parameters of `model` that are not exactly zero.

    Args:
        model: any module.

    Returns:
        The number of non-zero parameter entries.
    """
    return sum(int(torch.count_nonzero(p.detach()).item()) for p in model.parameters())


def count_macs_params(model: nn.Module, *, example_inputs: Tensor) -> tuple[int, int]:
    """Count multiply-accumulates for one forward pass of `example_inputs`, and the parameters.

    Args:
        model: the model (left unchanged: counting runs on a copy in eval mode).
        example_inputs: a batch the model accepts; MACs scale with its batch size.

    Returns:
        ``(macs, params)``.
    """
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return int(macs), int(params)


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
    together; they are ranked by the group score of `_ScoreImportance`.

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
    _check_scores(model, scores)
    for name in ignored:
        if name not in modules:
            raise ValueError(f"ignored module {name!r} is not in the model")
    prunable = {name: m for name, m in modules.items() if isinstance(m, _PRUNABLE)}
    dense = _dense_widths(prunable, dense_widths)
    params_before = sum(p.numel() for p in model.parameters())

    modes = {m: m.training for m in model.modules()}
    model.eval()  # tracing must not move BatchNorm running statistics
    try:
        out_before, classifier = _trace_output(model, example_inputs, prunable)
        skips = _fixed_layers(prunable, modules, classifier=classifier, ignored=ignored)
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        names = {module: name for name, module in modules.items()}
        importance = _ScoreImportance(graph=graph, names=names, scores=scores)
        fixed = [modules[name] for name in skips]
        groups = list(graph.get_all_groups(ignored_layers=fixed, root_module_types=_PRUNABLE))
        attention = {
            d.target.module for g in groups if _is_attention(g) for d, _ in g if _is_out(graph, d)
        }
        plans = []
        for group in groups:
            root = group[0].dep.target.module
            coupled = [names[d.target.module] for d, _ in group if _is_out(graph, d)]
            if any(d.target.module in attention for d, _ in group):
                # models reshape attention inputs/outputs with their own widths (view(b, t, c))
                reason = "attention projection or its input width (head structure)"
                skips.update({n: reason for n in coupled})
                continue
            plans.append((root, group[0].dep.handler, coupled))
        for root, handler, coupled in plans:
            current = int(graph.get_out_channels(root))
            target = min(
                round_width(dense[n] * (1.0 - ratio), multiple=round_to, maximum=current)
                for n in coupled
                if n in dense
            )
            if current <= target:
                continue
            full = graph.get_pruning_group(root, handler, list(range(current)))
            group_scores = importance(full)
            order = torch.argsort(group_scores, stable=True)
            drop = sorted(int(i) for i in order[: current - target])
            group = graph.get_pruning_group(root, handler, drop)
            if not graph.check_pruning_group(group):
                skips.update({n: "dependency graph refused the cut" for n in coupled})
                continue
            group.prune()
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


class _ScoreImportance(tp.importance.Importance):  # type: ignore[misc]
    """Group score of each root channel from per-weight scores.

    For every layer in a dependency group: sum its scores over the channel's slice (rows for
    output channels, columns for input channels), divide by the layer's mean slice score so
    layers of different scale weigh alike, then sum over the group. Layers without scores use
    |w|, so a group is always ranked.
    """

    def __init__(
        self,
        *,
        graph: tp.DependencyGraph,
        names: Mapping[nn.Module, str],
        scores: Mapping[str, Tensor],
    ) -> None:
        self.graph = graph
        self.names = names
        self.scores = scores

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> Tensor:
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        for item in group:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            root_idxs = item.root_idxs
            if not isinstance(module, nn.Module) or root_idxs is None or None in root_idxs:
                continue
            local = self._slice_scores(module, dep.handler, idxs)
            if local is None or local.numel() != len(root_idxs):
                continue
            local = local / (local.mean() + _EPS)
            total.scatter_add_(0, torch.tensor(root_idxs, dtype=torch.long), local)
        return total

    def _slice_scores(self, module: nn.Module, handler: object, idxs: list[int]) -> Tensor | None:
        is_out = self.graph.is_out_channel_pruning_fn(handler)
        if not is_out and not self.graph.is_in_channel_pruning_fn(handler):
            return None
        attr = "weight_ih_l0" if isinstance(module, nn.LSTM) else "weight"
        weight = getattr(module, attr, None)
        if not isinstance(weight, Tensor):
            return None
        key = f"{self.names[module]}.{attr}"
        score = self.scores.get(key)
        values = (score if score is not None else weight).detach().abs().double().cpu()
        if isinstance(module, nn.LSTM) and is_out:
            return None
        transposed = bool(getattr(module, "transposed", False))
        if values.dim() == 1:
            dim = 0
        elif is_out:
            dim = 1 if transposed else 0
        else:
            if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
                return None  # input columns of a grouped conv do not map one-to-one
            dim = 0 if transposed else 1
        if max(idxs, default=-1) >= values.shape[dim]:
            return None
        picked = values.index_select(dim, torch.tensor(idxs, dtype=torch.long))
        return picked.movedim(dim, 0).reshape(len(idxs), -1).sum(dim=1)


def _check_scores(model: nn.Module, scores: Mapping[str, Tensor]) -> None:
    state = model.state_dict()
    for key, score in scores.items():
        if key not in state:
            raise ValueError(f"scores[{key!r}] names no tensor of the model")
        if tuple(score.shape) != tuple(state[key].shape):
            raise ValueError(
                f"scores[{key!r}] has shape {tuple(score.shape)}, the weight has "
                f"{tuple(state[key].shape)}"
            )


def out_width(module: nn.Module) -> int:
    """Output channels of a Linear, LSTM (hidden size) or convolution."""
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.LSTM):
        return int(module.hidden_size)
    return int(cast(nn.modules.conv._ConvNd, module).out_channels)


def _dense_widths(
    prunable: Mapping[str, nn.Module], dense_widths: Mapping[str, int] | None
) -> dict[str, int]:
    if dense_widths is None:
        return {name: out_width(m) for name, m in prunable.items()}
    dense = dict(dense_widths)
    for name, module in prunable.items():
        if name not in dense:
            raise ValueError(f"dense_widths has no entry for layer {name!r}")
        if dense[name] < out_width(module):
            raise ValueError(
                f"dense_widths[{name!r}] = {dense[name]} is below the current width "
                f"{out_width(module)}"
            )
    return dense


def _trace_output(
    model: nn.Module, example_inputs: Tensor, prunable: Mapping[str, nn.Module]
) -> tuple[object, str | None]:
    """Run one forward pass; return the output and the name of the layer that makes the logits.

    That layer is the prunable layer whose output tensor is the model's output, else the last
    Linear that ran.
    """
    outputs: list[tuple[str, object]] = []

    def recorder(name: str) -> object:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            outputs.append((name, output))

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in prunable.items()]  # type: ignore[arg-type]
    try:
        with torch.no_grad():
            out = model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    for name, output in reversed(outputs):
        if output is out:
            return out, name
    linears = [name for name, _ in outputs if isinstance(prunable[name], nn.Linear)]
    return out, (linears[-1] if linears else None)


def _fixed_layers(
    prunable: Mapping[str, nn.Module],
    modules: Mapping[str, nn.Module],
    *,
    classifier: str | None,
    ignored: Collection[str],
) -> dict[str, str]:
    """Layers whose output channels stay, with the reason."""
    skips: dict[str, str] = {}
    if classifier is not None:
        skips[classifier] = "final classifier (its outputs are the logits)"
    for name in ignored:
        for sub, _ in modules[name].named_modules(prefix=name):
            if sub in prunable:
                skips.setdefault(sub, "ignored by the caller")
    for name, module in modules.items():
        if isinstance(module, nn.LSTM):
            skips.setdefault(name, "LSTM hidden units (torch-pruning cannot prune them)")
        elif isinstance(module, nn.MultiheadAttention):
            skips.setdefault(name, "multi-head attention (head structure)")
    return skips


def _is_out(graph: tp.DependencyGraph, dep: tp.Dependency) -> bool:
    """Whether `dep` removes output channels of a Conv, Linear or LSTM."""
    return isinstance(dep.target.module, _PRUNABLE) and bool(
        graph.is_out_channel_pruning_fn(dep.handler)
    )


def _is_attention(group: tp.dependency.Group) -> bool:
    for item in group:
        grad_fn = getattr(item.dep.target, "grad_fn", None)
        kind = type(grad_fn).__name__ if grad_fn is not None else ""
        if any(op in kind for op in _ATTENTION_OPS):
            return True
    return False


def resize_to_shapes(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give a freshly built dense model the tensor shapes recorded by `shapes_of`, in place.

    Every parameter and buffer is replaced by an uninitialised tensor of the recorded shape
    (load the pruned state dict afterwards), and module attributes follow: Linear
    in/out_features, ConvNd in/out_channels, BatchNorm/InstanceNorm num_features, GroupNorm
    num_channels, LayerNorm normalized_shape, Embedding sizes, LSTM input/hidden sizes.

    Args:
        model: a dense model of the same architecture as the pruned one.
        shapes: state-dict key -> shape, as returned by `shapes_of` on the pruned model.

    Raises:
        ValueError: naming the tensor whose shape is missing, unknown or cannot be applied.
    """
    state = model.state_dict(keep_vars=True)
    for key in state:
        if key not in shapes:
            raise ValueError(f"shapes has no entry for tensor {key!r}")
    for key, shape in shapes.items():
        if key not in state:
            raise ValueError(f"tensor {key!r} is not in the model")
        old = state[key]
        new_shape = tuple(int(s) for s in shape)
        if len(new_shape) != old.dim() or any(s < 0 for s in new_shape):
            raise ValueError(
                f"tensor {key!r}: shape {list(new_shape)} cannot replace {list(old.shape)}"
            )
        path, _, attr = key.rpartition(".")
        owner = model.get_submodule(path)
        fresh = torch.empty(new_shape, dtype=old.dtype, device=old.device)
        if attr in owner._parameters:
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
        elif attr in owner._buffers:
            owner._buffers[attr] = fresh
        else:
            raise ValueError(f"tensor {key!r} is neither a parameter nor a buffer")
    for name, module in model.named_modules():
        _update_attributes(name, module)


def _update_attributes(name: str, module: nn.Module) -> None:
    prefix = f"{name}." if name else ""

    def agree(attr: str, dim: int, size: int) -> None:
        tensor = getattr(module, attr, None)
        if isinstance(tensor, Tensor) and tensor.dim() > dim and tensor.shape[dim] != size:
            raise ValueError(
                f"tensor {prefix}{attr!s} has size {tensor.shape[dim]} in dim {dim}, "
                f"expected {size}"
            )

    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
        agree("bias", 0, module.out_features)
    elif isinstance(module, nn.modules.conv._ConvNd):
        weight = module.weight
        if tuple(weight.shape[2:]) != tuple(module.kernel_size):
            raise ValueError(f"tensor {prefix}weight: kernel {list(weight.shape[2:])} differs")
        if module.transposed:
            module.in_channels = int(weight.shape[0])
            module.out_channels = int(weight.shape[1]) * module.groups
        else:
            module.out_channels = int(weight.shape[0])
            module.in_channels = int(weight.shape[1]) * module.groups
        agree("bias", 0, module.out_channels)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        source = module.weight if module.weight is not None else module.running_mean
        if source is not None:
            module.num_features = int(source.shape[0])
            for attr in ("weight", "bias", "running_mean", "running_var"):
                agree(attr, 0, module.num_features)
    elif isinstance(module, nn.GroupNorm):
        if module.weight is not None:
            module.num_channels = int(module.weight.shape[0])
            if module.num_channels % module.num_groups:
                raise ValueError(
                    f"tensor {prefix}weight: {module.num_channels} channels do not split "
                    f"into {module.num_groups} groups"
                )
            agree("bias", 0, module.num_channels)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            module.normalized_shape = tuple(int(s) for s in module.weight.shape)
            if module.bias is not None and tuple(module.bias.shape) != module.normalized_shape:
                raise ValueError(f"tensor {prefix}bias: shape differs from {prefix}weight")
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape
    elif isinstance(module, nn.LSTM):
        weight_ih, weight_hh = (
            module.get_parameter("weight_ih_l0"),
            module.get_parameter("weight_hh_l0"),
        )
        module.input_size = int(weight_ih.shape[1])
        module.hidden_size = int(weight_hh.shape[0]) // 4
        gates = 4 * module.hidden_size
        for layer_name in module._flat_weights_names:
            rows = module.get_parameter(layer_name).shape[0]
            if ("_ih_" in layer_name or "_hh_" in layer_name) and rows != gates:
                raise ValueError(f"tensor {prefix}{layer_name}: {rows} rows, expected {gates}")
        module._init_flat_weights()
