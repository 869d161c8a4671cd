"""Counting what channel pruning removed: parameters, non-zeros, multiply-accumulates.

For channel jobs sparsity means one thing everywhere: the fraction of the dense model's
parameters that are gone from the saved model, ``1 - params_pruned / params_dense``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch_pruning as tp
from torch import Tensor, nn


def count_params(model: nn.Module) -> int:
    """Number of parameter entries of `model` (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


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


def removed_fraction(*, params_dense: int, params_pruned: int) -> float:
    """Fraction of parameters removed: ``1 - params_pruned / params_dense`` (0 for no params)."""
    if params_dense <= 0:
        return 0.0
    return 1.0 - params_pruned / params_dense


def removed_by_layer(
    dense: Mapping[str, Tensor], pruned: Mapping[str, Tensor], *, names: list[str] | None = None
) -> dict[str, float]:
    """Per tensor: the fraction of its dense entries that are gone, ``1 - numel_now / numel_dense``.

    Args:
        dense: tensors of the dense model by name (a state dict or parameters).
        pruned: tensors of the pruned model by the same names.
        names: the tensors to report; default every name present in both.

    Returns:
        Name -> removed fraction, for tensors with at least one dense entry.
    """
    chosen = names if names is not None else [name for name in dense if name in pruned]
    return {
        name: removed_fraction(params_dense=dense[name].numel(), params_pruned=pruned[name].numel())
        for name in chosen
        if dense[name].numel() > 0
    }
