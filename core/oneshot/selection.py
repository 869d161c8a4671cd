"""Scores -> masks for one layer: the lowest-scored weights per row, per layer, or N:M.

Masks are boolean (out, in) tensors, True where a weight is pruned. Counts are exact: a group of
n weights at sparsity s loses round(n * s) of them, whatever ties the scores hold.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Group = Literal["row", "layer"]


def pruned_count(total: int, sparsity: float) -> int:
    """How many of `total` weights a group at `sparsity` loses: round(total * sparsity)."""
    return min(total, max(0, round(total * sparsity)))


def _lowest(scores: Tensor, count: int) -> Tensor:
    """Boolean mask of the `count` lowest entries along the last dimension."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    if count > 0:
        index = torch.topk(scores, count, dim=-1, largest=False).indices
        mask.scatter_(-1, index, True)
    return mask


def unstructured_mask(scores: Tensor, sparsity: float, group: Group) -> Tensor:
    """Prune the lowest-scored fraction `sparsity` of each output row, or of the whole layer."""
    if group == "row":
        return _lowest(scores, pruned_count(scores.shape[1], sparsity))
    flat = _lowest(scores.reshape(-1), pruned_count(scores.numel(), sparsity))
    return flat.reshape(scores.shape)


def nm_mask(scores: Tensor, n: int, m: int) -> Tensor:
    """N:M: in every row, each run of m consecutive input weights keeps its n highest-scored.

    Raises:
        ValueError: the input width is not a multiple of m.
    """
    rows, columns = scores.shape
    if columns % m:
        raise ValueError(f"a layer with {columns} inputs cannot hold the {n}:{m} pattern")
    grouped = scores.reshape(rows, columns // m, m)
    return _lowest(grouped, m - n).reshape(rows, columns)


def choose_mask(
    scores: Tensor, sparsity: float, *, nm: tuple[int, int] | None, group: Group
) -> Tensor:
    """The mask the spec asks for: N:M when `nm` is given, else unstructured by `group`."""
    if nm is not None:
        return nm_mask(scores, *nm)
    return unstructured_mask(scores, sparsity, group)
