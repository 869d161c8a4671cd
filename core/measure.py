"""What the artifact's manifest states about a model, counted or measured, never assumed.

Metrics come from the caller's `evaluate`, sizes and MACs from counting, sparsity from the
tensors written to the weights file, latency from timed forward passes within the time the
job's budget has left.

Sparsity is given three ways, all counted from the saved tensors:
- `sparsity_all_weights`: zeros over every parameter in the file (prunable or not), the
  figure a user sees in the API and CLI headline;
- `sparsity_prunable` (also `overall`): zeros over the weights pruning may touch (Linear,
  Conv and recurrent matrices), with `per_layer` per such weight;
- `excluded`: the parameters pruning never touches, per module with the reason
  (embeddings, normalisation, other layer types), and the biases of prunable layers together.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize, prune

from core.data import TaskData
from core.exclusions import excluded_modules, exclusion_of
from core.latency import compare_latency
from core.masks import measured_sparsity, prunable_parameters
from core.structured import (
    count_macs_params,
    count_params,
    nonzero_params,
    removed_by_layer,
    removed_fraction,
)

Evaluate = Callable[[nn.Module, np.ndarray, np.ndarray], float]

# below this much time per batch size the interleaved rounds give no interval worth stating
MIN_SECONDS_PER_BATCH = 0.25
_NORMS = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with pruning reparametrisations folded into plain parameters.

    `torch.nn.utils.prune` keeps `weight_orig` and `weight_mask` and recomputes `weight` in a
    forward pre-hook; `torch.nn.utils.parametrize` keeps `parametrizations.<name>.original`.
    The copy holds the effective (masked) values under the plain names instead.
    """
    plain = copy.deepcopy(model)
    for module in plain.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)  # type: ignore[no-untyped-call]
        if parametrize.is_parametrized(module):
            parametrizations = cast(nn.ModuleDict, module.parametrizations)
            for name in list(parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return plain


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _metric(evaluate: Evaluate, model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    value = evaluate(model, x, y)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"evaluate returned {value!r}, not a number")
    return float(value)


def metrics(evaluate: Evaluate, model: nn.Module, data: TaskData) -> dict[str, float]:
    """The metric on the validation split, and on the test split when the task has one."""
    found = {"val": _metric(evaluate, model, data.x_val, data.y_val)}
    if data.x_test is not None and data.y_test is not None:
        found["test"] = _metric(evaluate, model, data.x_test, data.y_test)
    return found


def size(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Parameters, non-zero parameters and MACs of one forward pass of `example`."""
    macs, params = count_macs_params(model, example_inputs=example)
    return {"params": int(params), "nonzero": int(nonzero_params(model)), "macs": int(macs)}


def _exclusion_reason(module: nn.Module, name: str, excluded: dict[str, str]) -> str:
    listed = exclusion_of(name, excluded)
    if listed is not None:
        return listed
    if isinstance(module, _EMBEDDINGS):
        return "embedding: rows are looked up, not multiplied; never pruned"
    # transformers' own norms (LlamaRMSNorm, T5LayerNorm, ...) are named for what they are
    if isinstance(module, _NORMS) or type(module).__name__.endswith("Norm"):
        return "normalisation layer: never pruned"
    return f"{type(module).__name__} is not a prunable layer type"


def excluded_parameters(model: nn.Module) -> list[dict[str, Any]]:
    """Parameters pruning never touches: [{name, params, reason}], in module order.

    A module none of whose own parameters is prunable is one entry, named by its module path;
    the remaining parameters of prunable layers (biases, LSTM bias vectors) are one entry named
    "biases". A parameter shared between modules counts once, under its first owner.
    """
    prunable = {id(param) for param in prunable_parameters(model).values()}
    excluded = excluded_modules(model)
    seen: set[int] = set()
    entries: list[dict[str, Any]] = []
    biases = 0
    for module_name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        kept = [p for p in own if id(p) not in prunable]
        if not kept:
            continue
        count = sum(p.numel() for p in kept)
        if len(kept) < len(own):
            biases += count
            continue
        entries.append(
            {
                "name": module_name or "(model)",
                "params": count,
                "reason": _exclusion_reason(module, module_name, excluded),
            }
        )
    if biases:
        entries.append(
            {"name": "biases", "params": biases, "reason": "biases of prunable layers stay dense"}
        )
    return entries


def sparsity(
    *,
    saved: Mapping[str, Tensor],
    pruned: nn.Module,
    dense: nn.Module,
    structured: bool,
) -> dict[str, Any]:
    """The manifest's sparsity section, counted from the tensors in the weights file.

    `sparsity_all_weights` = 1 - (nonzero parameters in the file) / (parameters of the dense
    model): zeros and removed parameters count alike, so masks and channel removal read on one
    scale. For channel jobs `overall` and `per_layer` are the fractions removed; otherwise they
    are the zeros among the prunable weights.

    Args:
        saved: the weights file's tensors, by state-dict name.
        pruned: the (plain) pruned model those tensors came from.
        dense: the dense model, for the parameter count the fractions are taken of.
        structured: the job removes channels (the removed fraction is the headline).
    """
    names = list(prunable_parameters(pruned))
    prunable, per_layer = measured_sparsity({name: saved[name] for name in names})
    in_file = [saved[name] for name, _ in pruned.named_parameters() if name in saved]
    dense_params = count_params(dense)
    pruned_params = sum(tensor.numel() for tensor in in_file)
    nonzero = sum(int(tensor.count_nonzero()) for tensor in in_file)
    found: dict[str, Any] = {
        "sparsity_all_weights": 1.0 - nonzero / dense_params if dense_params else 0.0,
        "sparsity_prunable": prunable,
        "overall": prunable,
        "per_layer": per_layer,
        "excluded": excluded_parameters(pruned),
    }
    if structured or dense_params != pruned_params:
        found["params_dense"] = dense_params
        found["params_pruned"] = pruned_params
        found["removed_fraction"] = removed_fraction(
            params_dense=dense_params, params_pruned=pruned_params
        )
    if structured:
        found["overall"] = found["removed_fraction"]
        found["per_layer"] = removed_by_layer(dict(dense.named_parameters()), saved, names=names)
    return found


def latency_plan(
    *, batch_sizes: Sequence[int], seconds: float, time_left_s: float | None
) -> dict[str, Any]:
    """How much latency measuring the budget allows: the batch sizes kept and the seconds.

    The measuring time is min(`seconds`, `time_left_s`). When that leaves less than
    MIN_SECONDS_PER_BATCH per batch size, the largest batch sizes are dropped first (they cost
    the most per pass); when not even one is left, nothing is measured.

    Returns:
        {"batch_sizes", "seconds", "seconds_asked", "time_left_s", "skipped_batch_sizes",
        "limited_by_budget", "note"}.
    """
    allowed = seconds if time_left_s is None else max(0.0, min(seconds, time_left_s))
    kept = sorted(batch_sizes)
    while kept and allowed / len(kept) < MIN_SECONDS_PER_BATCH:
        kept.pop()
    kept = [size for size in batch_sizes if size in kept]
    skipped = [size for size in batch_sizes if size not in kept]
    limited = allowed < seconds
    note = None
    if limited:
        note = (
            f"budget.max_runtime_s left {max(time_left_s or 0.0, 0.0):.1f} s: latency measured "
            f"for {allowed if kept else 0.0:.1f} s instead of {seconds:.1f} s"
            + (f", batch sizes {skipped} skipped" if skipped else "")
        )
    return {
        "batch_sizes": kept,
        "seconds": allowed if kept else 0.0,
        "seconds_asked": seconds,
        "time_left_s": time_left_s,
        "skipped_batch_sizes": skipped,
        "limited_by_budget": limited,
        "note": note,
    }


def latency(
    *,
    dense: nn.Module,
    pruned: nn.Module,
    data: TaskData,
    device: str,
    batch_sizes: Sequence[int],
    seconds: float,
    time_left_s: float | None,
    speedup_expected: bool,
) -> dict[str, Any]:
    """Dense against pruned (with a same-model control) within the time the budget has left.

    `speedup_expected` is False for a pruned model that is no smaller than the dense one
    (masks and N:M patterns on dense kernels): its verdict is "not_expected" and no speed is
    claimed, though the ratio is still measured.
    """
    started = time.perf_counter()
    plan = latency_plan(batch_sizes=batch_sizes, seconds=seconds, time_left_s=time_left_s)
    measured = compare_latency(
        dense=dense.to(device),
        pruned=pruned.to(device),
        features=data.x_val,
        device=device,
        batch_sizes=plan["batch_sizes"],
        seconds=plan["seconds"],
        speedup_expected=speedup_expected,
    )
    if not speedup_expected:
        measured["note"] = (
            "the pruned model runs the same dense kernels as the dense one (zeros are still "
            "multiplied): no speedup is expected and none is claimed"
        )
    measured["budget"] = {key: value for key, value in plan.items() if key != "batch_sizes"}
    measured["budget"]["seconds_spent"] = time.perf_counter() - started
    return measured
