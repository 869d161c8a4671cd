"""Attention heads as units of channel pruning.

An attention module that declares its head count (Hugging Face's ``num_attention_heads``, or
``num_heads`` / ``n_heads`` / ``n_head``) splits the outputs of its query, key and value
projections into heads of ``head_dim`` channels. Torch-Pruning's dependency graph couples
those projections into one group (their outputs meet in the attention product); removing whole
heads from that group, and lowering the module's head count to match, keeps the head size, the
softmax scaling and every reshape the forward pass does valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

HEAD_COUNT_ATTRIBUTES = ("num_attention_heads", "num_heads", "n_heads", "n_head")


@dataclass(frozen=True)
class HeadLayout:
    """How a group of projections splits into heads: who owns them, how many, how wide."""

    owners: tuple[nn.Module, ...]
    heads: int
    head_dim: int


def head_count_attribute(module: nn.Module) -> str | None:
    """The name of the attribute `module` declares its head count in, if any."""
    for attr in HEAD_COUNT_ATTRIBUTES:
        value = module.__dict__.get(attr)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return attr
    return None


def head_projections(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Each Linear that is a direct child of a head-declaring attention module -> that module.

    `nn.MultiheadAttention` is left out: its projections are one packed parameter.
    """
    found: dict[nn.Module, nn.Module] = {}
    for module in model.modules():
        attr = head_count_attribute(module)
        if attr is None or isinstance(module, nn.MultiheadAttention):
            continue
        heads = int(getattr(module, attr))
        for child in module.children():
            if isinstance(child, nn.Linear) and child.out_features % heads == 0:
                found[child] = module
    return found


def head_layout(
    layers: list[nn.Module], projections: dict[nn.Module, nn.Module]
) -> HeadLayout | None:
    """The head layout of a dependency group whose output layers are `layers`, or None.

    A group qualifies when it has at least two output layers (separate query/key/value
    projections; a fused qkv layer is not split), all of them projections of attention modules
    with one head count, and all of one width.
    """
    if len(layers) < 2 or any(layer not in projections for layer in layers):
        return None
    owners = tuple(dict.fromkeys(projections[layer] for layer in layers))
    counts = {int(getattr(owner, head_count_attribute(owner) or "")) for owner in owners}
    widths = {int(layer.out_features) for layer in layers if isinstance(layer, nn.Linear)}
    if len(counts) != 1 or len(widths) != 1:
        return None
    heads, width = counts.pop(), widths.pop()
    return HeadLayout(owners=owners, heads=heads, head_dim=width // heads)


def heads_to_keep(dense_heads: int, ratio: float) -> int:
    """Heads kept at `ratio`: ``max(1, ceil(dense_heads * (1 - ratio)))``."""
    return max(1, math.ceil(dense_heads * (1.0 - ratio) - 1e-9))


def head_channels_to_drop(scores: Tensor, *, heads: int, head_dim: int, keep: int) -> list[int]:
    """Channel indices of the ``heads - keep`` heads with the lowest summed channel score."""
    per_head = scores.reshape(heads, head_dim).sum(dim=1)
    order = torch.argsort(per_head, stable=True)
    dropped = sorted(int(h) for h in order[: heads - keep])
    return [head * head_dim + offset for head in dropped for offset in range(head_dim)]


def set_head_count(layout: HeadLayout, heads: int) -> None:
    """Record the new head count on every owner (and ``all_head_size`` where it exists)."""
    for owner in layout.owners:
        attr = head_count_attribute(owner)
        if attr is not None:
            setattr(owner, attr, heads)
        if isinstance(owner.__dict__.get("all_head_size"), int):
            setattr(owner, "all_head_size", heads * layout.head_dim)  # noqa: B010
