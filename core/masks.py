"""Scores -> masks: unstructured (global or per layer), N:M, and per-layer sparsity allocation.

A mask is a bool tensor shaped like its weight; True means the weight is kept.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from core.exclusions import excluded_modules, exclusion_of
from core.selection import effective_scores, global_masks, layer_floor, select_lowest

_WEIGHT_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_RNN_PREFIXES = ("weight_ih_l", "weight_hh_l")


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Return the weights that pruning may zero, keyed by state-dict name, in module order.

    These are the weights of nn.Linear and nn.Conv1d/2d/3d and the input/hidden matrices
    (`weight_ih_l*`, `weight_hh_l*`) of recurrent modules (nn.RNN, nn.LSTM, nn.GRU). Biases,
    normalisation layers and embeddings are never included, nor the modules the model lists in
    its `prune_excluded` attribute (a Hugging Face model's classifier or LM head); a parameter
    shared between modules is listed once, under its first name.

    Args:
        model: the model to inspect.

    Returns:
        An ordered name -> parameter mapping.
    """
    found: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    excluded = excluded_modules(model)
    for module_name, module in model.named_modules():
        if excluded and exclusion_of(module_name, excluded) is not None:
            seen.update(id(param) for param in module.parameters(recurse=False))
            continue
        prefix = f"{module_name}." if module_name else ""
        candidates: list[tuple[str, nn.Parameter]] = []
        if isinstance(module, _WEIGHT_MODULES) and isinstance(module.weight, nn.Parameter):
            candidates.append(("weight", module.weight))
        elif isinstance(module, nn.RNNBase):
            candidates.extend(
                (name, param)
                for name, param in module.named_parameters(recurse=False)
                if name.startswith(_RNN_PREFIXES) and param.ndim >= 2
            )
        for name, param in candidates:
            if id(param) not in seen:
                seen.add(id(param))
                found[prefix + name] = param
    return found


def _check_fraction(value: float, *, name: str, upper_inclusive: bool = False) -> None:
    if not (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0) or math.isnan(value):
        bound = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(f"{name} must be in {bound}, got {value!r}")


def _previous_masks(
    scores: Mapping[str, Tensor], previous: Mapping[str, Tensor] | None
) -> dict[str, Tensor]:
    """Previous masks as bool tensors on each score's device; missing layers count as dense."""
    result: dict[str, Tensor] = {}
    for name, score in scores.items():
        if previous is None or name not in previous:
            result[name] = torch.ones_like(score, dtype=torch.bool)
            continue
        mask = previous[name]
        if mask.shape != score.shape:
            raise ValueError(
                f"previous mask for {name!r} has shape {tuple(mask.shape)}, "
                f"scores have {tuple(score.shape)}"
            )
        result[name] = mask.to(device=score.device, dtype=torch.bool)
    return result


def unstructured_masks(
    scores: Mapping[str, Tensor],
    *,
    sparsity: float,
    scope: Literal["global", "layer"],
    min_density: float,
    previous: Mapping[str, Tensor] | None = None,
    layer_sparsity: Mapping[str, float] | None = None,
) -> dict[str, Tensor]:
    """Prune the lowest-scored weights, globally or per layer, never below a per-layer floor.

    Global scope prunes k = round(sparsity * total) weights over all layers: each layer offers
    its lowest-scored `numel - floor` weights as candidates (all of its already-pruned weights
    when `previous` pruned more than that), and the k lowest candidates are pruned; the cut is
    found by one topk over the joined keys of a small model (up to 16 M weights) and by radix
    selection over the layers one at a time for a larger one, so that no tensor spans all of a
    large model's layers. When the floors allow fewer than k, every candidate is pruned.
    Layer scope prunes round(s_l * numel_l) weights in each layer, s_l taken from
    `layer_sparsity` when it names the layer, else `sparsity`, capped by the floor.

    Weights pruned in `previous` score -inf, so they stay pruned; when the requested count is at
    most what `previous` already prunes (overall in global scope, per layer in layer scope), the
    previous masks are returned unchanged. Ties go to the earlier layer, then the lower index.

    Args:
        scores: name -> non-negative importance, higher means more important.
        sparsity: fraction of weights to zero, in [0, 1).
        scope: "global" (one ranking over all layers) or "layer" (each layer on its own).
        min_density: each layer keeps at least max(1, ceil(min_density * numel)) weights.
        previous: masks from the last step (True = kept); their zeros are kept.
        layer_sparsity: per-layer sparsities overriding `sparsity` (layer scope only).

    Returns:
        name -> bool mask with the shape and device of its scores.
    """
    _check_fraction(sparsity, name="sparsity")
    _check_fraction(min_density, name="min_density")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    if layer_sparsity is not None and scope != "layer":
        raise ValueError(f"layer_sparsity needs scope='layer', got scope={scope!r}")
    for name, value in (layer_sparsity or {}).items():
        if name not in scores:
            raise ValueError(f"layer_sparsity names {name!r}, which has no scores")
        _check_fraction(value, name=f"layer_sparsity[{name!r}]", upper_inclusive=True)
    kept = _previous_masks(scores, previous)
    if scope == "layer":
        return {
            name: _layer_mask(
                score,
                kept=kept[name],
                sparsity=(layer_sparsity or {}).get(name, sparsity),
                min_density=min_density,
            )
            for name, score in scores.items()
        }
    return global_masks(scores, kept=kept, sparsity=sparsity, min_density=min_density)


def _layer_mask(score: Tensor, *, kept: Tensor, sparsity: float, min_density: float) -> Tensor:
    numel = score.numel()
    already = numel - int(kept.sum().item())
    allowed = max(numel - layer_floor(numel=numel, min_density=min_density), already)
    count = min(round(sparsity * numel), allowed)
    if count <= already:
        return kept.clone()
    return ~select_lowest(effective_scores(score, kept), count).view(score.shape)


def nm_incompatible(shapes: Mapping[str, Sequence[int]], m: int) -> list[str]:
    """Names of layers that cannot take an N:M pattern: fewer than 2 dims, or dim 1 % m != 0.

    Args:
        shapes: name -> weight shape ([out, in, *kernel]).
        m: the group size M.

    Returns:
        The incompatible names, in the mapping's order.
    """
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m!r}")
    return [name for name, shape in shapes.items() if len(shape) < 2 or shape[1] % m != 0]


def _nm_mask(score: Tensor, *, kept: Tensor, n: int, m: int) -> Tensor:
    # Put the input dim last so each row of `groups` is m consecutive inputs of one
    # (output, kernel position); this is the layout sparse tensor cores read.
    moved = score.detach().float().masked_fill(~kept, float("-inf")).movedim(1, -1)
    groups = moved.reshape(-1, m)
    # A stable descending sort keeps the earlier input among equal scores.
    top = torch.sort(groups, dim=-1, descending=True, stable=True).indices[:, :n]
    pattern = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return pattern.view(moved.shape).movedim(-1, 1) & kept


def nm_masks(
    scores: Mapping[str, Tensor],
    *,
    n: int,
    m: int,
    previous: Mapping[str, Tensor] | None = None,
    layers: Collection[str] | None = None,
) -> dict[str, Tensor]:
    """N:M masks along the input dimension: of every m consecutive inputs keep the n best.

    For a Linear weight [out, in] the groups are m consecutive inputs of each row; for a Conv
    weight [out, in, *k] they run along `in` for each (out, kernel position). Layers listed by
    `nm_incompatible` (input dim not divisible by m) and layers outside `layers` are left as
    `previous` (dense when there is none). Weights pruned in `previous` rank lowest in their
    group, so they stay pruned: a group keeps exactly n weights unless `previous` already pruned
    more than m - n of them, in which case it keeps fewer (still a valid "at most n of m").

    Args:
        scores: name -> importance, higher means more important.
        n: weights kept per group, 0 < n < m.
        m: group size.
        previous: masks from the last step (True = kept).
        layers: names that get the pattern; None means all compatible layers.

    Returns:
        name -> bool mask with the shape and device of its scores.
    """
    if not (0 < n < m):
        raise ValueError(f"N:M pattern needs 0 < n < m, got n={n!r}, m={m!r}")
    kept = _previous_masks(scores, previous)
    chosen = set(scores) if layers is None else set(layers)
    unknown = chosen - set(scores)
    if unknown:
        raise ValueError(f"layers {sorted(unknown)!r} have no scores")
    incompatible = set(nm_incompatible({k: tuple(v.shape) for k, v in scores.items()}, m))
    return {
        name: (
            _nm_mask(score, kept=kept[name], n=n, m=m)
            if name in chosen and name not in incompatible
            else kept[name].clone()
        )
        for name, score in scores.items()
    }


def apply_masks(params: Mapping[str, nn.Parameter | Tensor], masks: Mapping[str, Tensor]) -> None:
    """Zero the pruned weights (mask False) of each masked parameter, in place.

    Args:
        params: name -> parameter or tensor to modify.
        masks: name -> bool mask (True = kept); every name must be in `params`.
    """
    with torch.no_grad():
        for name, mask in masks.items():
            if name not in params:
                raise ValueError(f"mask {name!r} names no parameter")
            param = params[name]
            if mask.shape != param.shape:
                raise ValueError(
                    f"mask for {name!r} has shape {tuple(mask.shape)}, "
                    f"parameter has {tuple(param.shape)}"
                )
            param.masked_fill_(~mask.to(device=param.device, dtype=torch.bool), 0.0)


def measured_sparsity(tensors: Mapping[str, Tensor]) -> tuple[float, dict[str, float]]:
    """Fraction of exact zeros, counted from the values (not from masks).

    Args:
        tensors: name -> weight tensor.

    Returns:
        (zeros over all elements, name -> zeros over that tensor's elements); 0.0 when empty.
    """
    per_layer: dict[str, float] = {}
    zeros = 0
    total = 0
    for name, tensor in tensors.items():
        layer_zeros = int((tensor.detach() == 0).sum().item())
        numel = tensor.numel()
        per_layer[name] = layer_zeros / numel if numel else 0.0
        zeros += layer_zeros
        total += numel
    return (zeros / total if total else 0.0), per_layer


def sensitivity_allocation(
    *,
    sensitivity: Mapping[str, float],
    numel: Mapping[str, int],
    sparsity: float,
    min_density: float,
) -> dict[str, float]:
    """Per-layer sparsities whose numel-weighted mean is `sparsity`; sensitive layers keep more.

    Rule (density proportional to sensitivity, clipped to the allowed box):
        w_l = max(sens_l, 0) + tau,  tau = 1e-3 * max(max_l sens_l, 0) + 1e-12
        d_l = clip(c * w_l, min_density, 1),   s_l = 1 - d_l
    with c > 0 found by bisection so that sum_l numel_l * d_l = (1 - sparsity) * sum_l numel_l.
    A layer twice as sensitive keeps twice the fraction of weights until a bound binds; the
    offset tau gives layers with zero or negative sensitivity (pruning them did not hurt) a small
    positive share. Equal sensitivities give every layer `sparsity`. When the target exceeds
    1 - min_density every layer gets 1 - min_density.

    Args:
        sensitivity: name -> metric drop when that layer alone is pruned (higher = more hurt).
        numel: name -> number of prunable weights in that layer (same names).
        sparsity: the overall target in [0, 1).
        min_density: smallest fraction of weights any layer keeps, in [0, 1).

    Returns:
        name -> sparsity in [0, 1 - min_density].
    """
    _check_fraction(sparsity, name="sparsity")
    _check_fraction(min_density, name="min_density")
    if set(sensitivity) != set(numel):
        raise ValueError(
            f"sensitivity and numel name different layers: {sorted(set(sensitivity) ^ set(numel))}"
        )
    for name, value in sensitivity.items():
        if not math.isfinite(value):
            raise ValueError(f"sensitivity[{name!r}] must be finite, got {value!r}")
        if numel[name] < 1:
            raise ValueError(f"numel[{name!r}] must be >= 1, got {numel[name]!r}")
    names = list(sensitivity)
    if not names:
        return {}
    top = max(max(sensitivity.values()), 0.0)
    tau = 1e-3 * top + 1e-12
    weights = [max(sensitivity[name], 0.0) + tau for name in names]
    sizes = [numel[name] for name in names]
    total = sum(sizes)
    wanted = (1.0 - sparsity) * total

    def kept(scale: float) -> list[float]:
        return [min(1.0, max(min_density, scale * w)) for w in weights]

    def mass(scale: float) -> float:
        return sum(d * size for d, size in zip(kept(scale), sizes, strict=True))

    if wanted <= min_density * total:
        return {name: 1.0 - min_density for name in names}
    low, high = 0.0, 1.0 / max(weights)
    while mass(high) < wanted:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if mass(mid) < wanted:
            low = mid
        else:
            high = mid
    return {
        name: min(1.0 - min_density, max(0.0, 1.0 - d))
        for name, d in zip(names, kept(high), strict=True)
    }
