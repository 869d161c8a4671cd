"""Activation importances over calibration batches: attention heads, MLP channels and hidden
entries for width pruning (Minitron), block influence for depth pruning (ShortGPT).

Muralidharan et al. 2024, "Compact Language Models via Pruning and Knowledge Distillation"
(arXiv 2407.14679): a head's importance is the norm of its attention output, an MLP channel's
the norm of its activation, a hidden entry's the norm of the normalisation layers' outputs,
each accumulated over the calibration tokens. Here every norm is the L2 norm over the real
(unpadded) tokens: importance_c = sqrt(sum_t a_{t,c}^2).

Men et al. 2024, "ShortGPT: Layers in Large Language Models are More Redundant Than You
Expect" (arXiv 2403.03853): a block's influence is BI_i = 1 - E_t[cos(x_i,t, x_{i+1},t)], the
mean over tokens of the cosine between its input and output hidden states; the blocks of
lowest influence change the residual stream least and are removed first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.hf.shrink.families import Family, block_list
from core.hf.shrink.slicing import Geometry
from core.oneshot.capture import capture_block_inputs, run_on_all


@dataclass(frozen=True)
class WidthImportance:
    """Per block: key/value group, attention channel (the heads' outputs, channel by channel)
    and MLP channel importances; the hidden entries' importance."""

    groups: list[Tensor]
    head_channels: list[Tensor]
    channels: list[Tensor]
    hidden: Tensor


class _SquareSums:
    """Per-channel sums of squares of a module's activations over the real tokens."""

    def __init__(self, mask: list[Tensor | None]) -> None:
        self.mask = mask
        self.total: Tensor | None = None

    def add(self, value: Tensor) -> None:
        squares = value.detach().float().pow(2)
        weight = self.mask[0]
        if weight is not None and squares.dim() == 3 and squares.shape[:2] == weight.shape:
            squares = squares * weight[..., None].to(squares)
        summed = squares.reshape(-1, squares.shape[-1]).sum(dim=0)
        self.total = summed if self.total is None else self.total + summed

    def value(self, size: int) -> Tensor:
        if self.total is None:
            return torch.zeros(size)
        return self.total.cpu()


def width_importance(
    model: nn.Module,
    *,
    family: Family,
    geometry: Geometry,
    batches: Sequence[Tensor],
    forward: Any,
) -> WidthImportance:
    """Accumulate the activation importances of `model` over `batches`.

    Args:
        model: the Hugging Face model whose modules are hooked.
        batches: packed (N, 2, L) token ids and attention masks.
        forward: runs one batch through the model (the engine's adapter).
    """
    mask: list[Tensor | None] = [None]
    heads: list[_SquareSums] = []
    channels: list[_SquareSums] = []
    hidden = _SquareSums(mask)
    handles = []

    def input_hook(sums: _SquareSums) -> Any:
        return lambda _module, args: sums.add(args[0])

    def output_hook(_module: nn.Module, _args: Any, output: Tensor) -> None:
        hidden.add(output)

    for block in block_list(model, family):
        heads.append(_SquareSums(mask))
        channels.append(_SquareSums(mask))
        out = block.get_submodule(family.out)
        down = block.get_submodule(family.mlp_out)
        handles.append(out.register_forward_pre_hook(input_hook(heads[-1])))
        handles.append(down.register_forward_pre_hook(input_hook(channels[-1])))
        for norm in family.norms:
            handles.append(block.get_submodule(norm).register_forward_hook(output_hook))
    try:
        with torch.no_grad():
            for batch in batches:
                mask[0] = batch[:, 1] if batch.dim() == 3 else None
                forward(batch)
    finally:
        for handle in handles:
            handle.remove()
    per_group = geometry.queries_per_group * geometry.head_dim
    attention = [sums.value(geometry.heads * geometry.head_dim) for sums in heads]
    return WidthImportance(
        groups=[
            squares.reshape(geometry.kv_heads, per_group).sum(dim=1).sqrt() for squares in attention
        ],
        head_channels=[squares.sqrt() for squares in attention],
        channels=[sums.value(geometry.intermediate).sqrt() for sums in channels],
        hidden=hidden.value(geometry.hidden).sqrt(),
    )


def block_influence(
    model: nn.Module, *, family: Family, batches: Sequence[Tensor], device: torch.device
) -> list[float]:
    """BI_i = 1 - mean cos(input, output) over the real tokens, for every block in order.

    Each block runs on the previous block's outputs (the dense model's own hidden states),
    captured through `core.oneshot.capture`.
    """
    blocks = block_list(model, family)
    calibration = [{"input_ids": batch[:, 0], "attention_mask": batch[:, 1]} for batch in batches]
    inputs = capture_block_inputs(model, blocks[0], calibration, device)
    masks = [batch[:, 1].to(device).float() for batch in batches]
    influence: list[float] = []
    for block in blocks:
        outputs = run_on_all(block, inputs)
        total, count = 0.0, 0.0
        for before, after, weight in zip(inputs.hidden, outputs, masks, strict=True):
            cosine = F.cosine_similarity(before.float(), after.float(), dim=-1)
            total += float((cosine * weight).sum())
            count += float(weight.sum())
        influence.append(1.0 - total / max(count, 1.0))
        inputs.hidden = outputs
    return influence
