"""Depth pruning (ShortGPT): whole blocks of lowest block influence removed until about a
target fraction of the parameters is gone; the config's block count and per-block lists shrink
with them, and the rebuilt blocks are renumbered (attention `layer_idx`, the KV cache's index).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import Tensor, nn

from core.hf.shrink.families import block_list, family_of
from core.hf.shrink.importance import block_influence
from core.hf.shrink.slicing import (
    Shrunk,
    cut_depth,
    geometry_of,
    parameter_names,
    rebuild,
    rewrite_config,
)


def blocks_to_remove(*, blocks: int, block_params: int, total_params: int, target: float) -> int:
    """The block count whose removal comes nearest `target` of the parameters, in
    [1, blocks - 1] (a model keeps at least one block)."""
    if blocks < 2:
        return 0
    best = min(
        range(1, blocks),
        key=lambda count: (abs(count * block_params / total_params - target), count),
    )
    return int(best)


def depth_prune(
    model: nn.Module,
    *,
    target: float,
    batches: Sequence[Tensor],
    device: torch.device,
) -> Shrunk:
    """Remove the blocks of lowest influence, about `target` of the parameters.

    Args:
        model: the `AutoModelFor...` model (left unchanged).
        target: fraction of the parameters to remove, in (0, 1).
        batches: calibration batches, packed (N, 2, L) ids and masks.
        device: where the block influences are computed.

    Raises:
        UnsupportedArchitecture: an unsupported model type.
    """
    family = family_of(model)
    config: Any = model.config
    dense = geometry_of(config)
    blocks = block_list(model, family)
    block_params = sum(parameter.numel() for parameter in blocks[0].parameters())
    total = sum(parameter.numel() for parameter in model.parameters())
    influence = block_influence(model, family=family, batches=batches, device=device)
    count = blocks_to_remove(
        blocks=dense.layers, block_params=block_params, total_params=total, target=target
    )
    ranked = sorted(range(dense.layers), key=lambda index: (influence[index], index))
    removed = sorted(ranked[:count])
    keep = [index for index in range(dense.layers) if index not in removed]
    state = cut_depth(model.state_dict(), model=model, family=family, keep=keep)
    sizes = replace(dense, layers=len(keep))
    new_config = rewrite_config(config, family=family, sizes=sizes, blocks=keep)
    pruned = rebuild(model, config=new_config, state=state)
    names = parameter_names(pruned)
    after = sum(state[name].numel() for name in names if name in state)
    details: dict[str, Any] = {
        "mode": "depth",
        "family": family.name,
        "dense_sizes": asdict(dense),
        "pruned_sizes": asdict(sizes),
        "block_influence": influence,
        "removed_blocks": removed,
        "kept_blocks": keep,
        "planned_removed_fraction": 1.0 - after / total,
    }
    return Shrunk(model=pruned, details=details)
