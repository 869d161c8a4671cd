"""Per-weight importance criteria: magnitude, Taylor, activation (Wanda), adaptive (the seed
ratio criterion is in `core.seed_ratio`).

Every criterion maps a ScoringContext to name -> non-negative float32 scores shaped like each
prunable weight; higher means more important. A new criterion is one class plus one line in
`core.registries.CRITERIA` (here `IMPORTANCES`, the same registry). A criterion with
settings builds itself from the prune spec with a `from_spec` classmethod; one without is
built with no arguments.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from core.precision import autocast
from core.registries import CRITERIA
from core.registry import Registry
from core.spec import PruneSpec

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RNN_WEIGHT = re.compile(r"^weight_(ih|hh)_l(\d+)(_reverse)?$")


@dataclass
class ScoringContext:
    """What a criterion may look at: the model, its prunable weights and calibration batches."""

    model: nn.Module
    params: dict[str, nn.Parameter]
    batches: Sequence[tuple[Tensor, Tensor]]
    loss_fn: Callable[[Tensor, Tensor], Tensor]


class Importance(Protocol):
    """A pruning criterion: name -> non-negative scores shaped like each weight."""

    name: str

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]: ...


@dataclass
class _Statistics:
    taylor: dict[str, Tensor]
    input_norms: dict[str, Tensor]


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    module_name, _, attr = name.rpartition(".")
    return model.get_submodule(module_name), attr


@contextmanager
def _scoring_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the pass; every module's own mode (and RNN dropout) restored afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    rnn_dropout = [(m, m.dropout) for m in model.modules() if isinstance(m, nn.RNNBase)]
    model.eval()
    # cuDNN refuses RNN backward in eval mode; an RNN in train mode with dropout 0 computes
    # exactly what eval mode would, so use that instead.
    for rnn, _ in rnn_dropout:
        rnn.dropout = 0.0
        rnn.train()
    try:
        yield
    finally:
        for rnn, dropout in rnn_dropout:
            rnn.dropout = dropout
        for module, training in modes:
            module.training = training


class _InputNorms:
    """Forward hooks that add up the squared input features seen by each owning module."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.squares: dict[int, tuple[Tensor, Tensor]] = {}
        self.handles: list[RemovableHandle] = []
        owners = {id(_owner(model, name)[0]): _owner(model, name)[0] for name in names}
        for module in owners.values():
            self.handles.append(module.register_forward_hook(self._hook))

    def _hook(self, module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
        x = _data(inputs[0])
        if isinstance(module, _CONV):
            channel_dim = x.ndim - (module.weight.ndim - 2) - 1
            x = x.movedim(channel_dim, -1)
        x_sq = x.detach().float().pow(2).reshape(-1, x.shape[-1]).sum(0)
        out_sq = torch.zeros(0, device=x.device)
        if isinstance(module, nn.RNNBase):
            out = _data(output[0] if isinstance(output, tuple) else output)
            out_sq = out.detach().float().pow(2).reshape(-1, out.shape[-1]).sum(0)
        previous = self.squares.get(id(module))
        if previous is not None:
            x_sq, out_sq = x_sq + previous[0], out_sq + previous[1]
        self.squares[id(module)] = (x_sq, out_sq)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _data(value: object) -> Tensor:
    if isinstance(value, nn.utils.rnn.PackedSequence):
        return value.data
    if not isinstance(value, Tensor):
        raise ValueError(f"activation scoring needs tensor inputs, got {type(value).__name__}")
    return value


def _feature_factor(
    module: nn.Module, attr: str, weight: Tensor, squares: tuple[Tensor, Tensor]
) -> Tensor:
    """The input-norm factor ||x_j||_2 for `weight`, broadcastable to its shape."""
    in_sq, out_sq = squares
    if isinstance(module, nn.RNNBase):
        match = _RNN_WEIGHT.match(attr)
        if match is None:
            raise ValueError(f"no activation rule for recurrent weight {attr!r}")
        kind, layer, reverse = match[1], int(match[2]), match[3] is not None
        if kind == "ih" and layer == 0:
            sq = in_sq
        elif kind == "ih":
            sq = out_sq
        else:
            width = out_sq.numel() // (2 if module.bidirectional else 1)
            sq = out_sq[width:] if reverse else out_sq[:width]
        factor = sq.sqrt().unsqueeze(0)
    elif isinstance(module, _CONV) and module.groups > 1:
        groups = module.groups
        per_out = weight.shape[0] // groups
        norms = in_sq.sqrt().view(groups, -1)
        factor = norms.repeat_interleave(per_out, dim=0)
    else:
        factor = in_sq.sqrt().unsqueeze(0)
    if factor.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"input features ({factor.shape[-1]}) do not match the input dim of a weight "
            f"shaped {tuple(weight.shape)} in {type(module).__name__}"
        )
    return factor.view(*factor.shape, *([1] * (weight.ndim - 2)))


def _collect(ctx: ScoringContext, *, gradients: bool, activations: bool) -> _Statistics:
    """One pass over the calibration batches gathering Taylor sums and input norms.

    Taylor: sum over batches b of |w * dL_b/dw|. Absolute per-batch products are summed, not
    the gradients, because at a trained model the gradients of different batches largely cancel,
    and |w * sum_b g_b| would then call every weight unimportant (Molchanov et al. 2019,
    "Importance Estimation for Neural Network Pruning", accumulate per minibatch too).
    Gradients come from torch.autograd.grad, so no parameter's .grad is touched.
    """
    if not ctx.batches:
        raise ValueError("this criterion needs at least one calibration batch, got none")
    names = list(ctx.params)
    params = [ctx.params[name] for name in names]
    taylor = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in ctx.params.items()}
    hooks = _InputNorms(ctx.model, names) if activations else None
    flags = [p.requires_grad for p in params]
    try:
        with _scoring_mode(ctx.model), torch.enable_grad() if gradients else torch.no_grad():
            for p in params:
                p.requires_grad_(gradients or p.requires_grad)
            for x, y in ctx.batches:
                # the same bf16 autocast as fine-tuning on CUDA: scores rank the weights of the
                # model as it trains, at the cost of a training batch, not of an fp32 one
                with autocast(x.device):
                    loss = ctx.loss_fn(ctx.model(x), y)
                if not gradients:
                    continue
                if loss.numel() != 1:
                    raise ValueError(f"loss_fn must return a scalar, got {tuple(loss.shape)}")
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for name, p, grad in zip(names, params, grads, strict=True):
                    if grad is not None:
                        taylor[name].add_((p.detach().float() * grad.float()).abs_())
                del loss, grads
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        if hooks is not None:
            hooks.remove()
    return _Statistics(taylor=taylor, input_norms=_norms(ctx, hooks) if hooks else {})


def _norms(ctx: ScoringContext, hooks: _InputNorms) -> dict[str, Tensor]:
    """Per-weight input-norm factors; modules whose forward never ran get the mean norm.

    A weight used functionally (e.g. nn.MultiheadAttention.out_proj) never triggers its module's
    hook; a uniform factor equal to the mean feature norm of the observed layers makes it rank
    by |w| on the same scale instead of scoring zero.
    """
    factors: dict[str, Tensor] = {}
    missing: list[str] = []
    for name, param in ctx.params.items():
        module, attr = _owner(ctx.model, name)
        squares = hooks.squares.get(id(module))
        if squares is None:
            missing.append(name)
            continue
        factors[name] = _feature_factor(module, attr, param, squares)
    observed = [f.mean() for f in factors.values()]
    fallback = float(torch.stack(observed).mean().item()) if observed else 1.0
    for name in missing:
        param = ctx.params[name]
        factors[name] = torch.full((1,) * param.ndim, fallback, device=param.device)
    return factors


def _activation_scores(ctx: ScoringContext, norms: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: param.detach().float().abs() * norms[name] for name, param in ctx.params.items()}


def _per_layer_mean_normalised(score: Tensor) -> Tensor:
    mean = score.mean()
    # torch.where instead of `if mean > 0`: no host sync per layer on a GPU
    return torch.where(mean > 0, score / mean, score)


class MagnitudeImportance:
    """S = |w|: the classic magnitude criterion; needs no data."""

    name = "magnitude"

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        return {name: p.detach().float().abs() for name, p in ctx.params.items()}


class TaylorImportance:
    """First-order Taylor importance S = sum_b |w * dL_b/dw| over the calibration batches.

    Molchanov et al. 2019, "Importance Estimation for Neural Network Pruning" (CVPR). The sum of
    absolute per-batch products is used rather than |w * sum_b g_b|, because gradients of a
    trained model cancel across batches. Scoring runs in eval mode; the model's mode and every
    parameter's .grad are left as they were.
    """

    name = "taylor"

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        return _collect(ctx, gradients=True, activations=False).taylor


class ActivationImportance:
    """Wanda (Sun et al. 2023, arXiv 2306.11695): S_ij = |w_ij| * ||x_j||_2.

    ||x_j||_2 is the L2 norm of input feature j over every calibration token/position, gathered
    with forward hooks on the modules owning the weights (removed afterwards, even on error).
    Conv: the norm of input channel j over batch and spatial positions, broadcast over the
    kernel (per group for grouped convs). Recurrent modules: weight_ih_l0 uses the norm of the
    module's input features; weight_hh_l* and weight_ih_l{k>0} use the norm of the module's
    hidden outputs (the last layer's, the only ones a hook sees), per direction for weight_hh.
    """

    name = "activation"

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        stats = _collect(ctx, gradients=False, activations=True)
        return _activation_scores(ctx, stats.input_norms)


class AdaptiveImportance:
    """Task-aware blend S = mix * G / mean(G) + (1 - mix) * A / mean(A), per layer.

    G is the Taylor score (the task loss's first-order sensitivity), A the activation score
    (Wanda); dividing each by its per-layer mean puts them on one scale, so `mix` alone sets the
    balance. A layer whose mean is zero keeps its raw (zero) part. Both statistics come from a
    single pass over the calibration batches.
    """

    name = "adaptive"

    def __init__(self, mix: float = 0.5) -> None:
        if not 0.0 <= mix <= 1.0:
            raise ValueError(f"mix must be in [0, 1], got {mix!r}")
        self.mix = mix

    @classmethod
    def from_spec(cls, spec: PruneSpec) -> AdaptiveImportance:
        return cls(mix=spec.adaptive_mix)

    def __call__(self, ctx: ScoringContext) -> dict[str, Tensor]:
        stats = _collect(ctx, gradients=True, activations=True)
        activation = _activation_scores(ctx, stats.input_norms)
        scores: dict[str, Tensor] = {}
        for name in ctx.params:
            gradient = _per_layer_mean_normalised(stats.taylor.pop(name))
            scores[name] = self.mix * gradient + (1.0 - self.mix) * _per_layer_mean_normalised(
                activation.pop(name)
            )
        return scores


IMPORTANCES: Registry[Any] = CRITERIA


def auto_candidates() -> tuple[str, ...]:
    """The criteria `criterion: auto` probes, in registration order."""
    return tuple(name for name in CRITERIA if CRITERIA.info(name).get("auto_candidate"))


AUTO_CANDIDATES = auto_candidates()


def make_importance(name: str, spec: PruneSpec) -> Importance:
    """Build the criterion called `name` from the spec's settings.

    Args:
        name: a registered criterion ("auto" is resolved by the loop, not here).
        spec: the prune spec (adaptive_mix, seed_alpha, seed_gamma).

    Returns:
        The criterion.
    """
    if name not in IMPORTANCES:
        raise ValueError(
            f"unknown importance criterion {name!r}; known: {', '.join(IMPORTANCES)}"
            + (" ('auto' is resolved by the loop)" if name == "auto" else "")
        )
    cls = CRITERIA.resolve(name)
    from_spec = getattr(cls, "from_spec", None)
    criterion: Importance = from_spec(spec) if from_spec is not None else cls()
    return criterion
