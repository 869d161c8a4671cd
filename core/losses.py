"""The training loss of every task: cross-entropy over classes, or over token positions.

Classification logits are (N, C) against labels (N,). Token-level logits (N, L, V) are scored
against targets (N, L) in which IGNORE marks positions without a target (padding, the last
token); a causal LM's targets are the next tokens, so this is its next-token cross-entropy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

IGNORE = -100


def _flat(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    return logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy over the examples (or the scored token positions)."""
    flat_logits, flat_targets = _flat(logits, targets)
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE)


def cross_entropy_sum(logits: Tensor, targets: Tensor) -> tuple[float, int]:
    """(summed cross-entropy, number of scored positions): a split's mean is sum / count."""
    flat_logits, flat_targets = _flat(logits, targets)
    total = F.cross_entropy(flat_logits, flat_targets, ignore_index=IGNORE, reduction="sum")
    return float(total), int((flat_targets != IGNORE).sum())


def scored(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """The (positions, classes) logits and (positions,) targets that have a target."""
    flat_logits, flat_targets = _flat(logits, targets)
    keep = flat_targets != IGNORE
    return flat_logits[keep], flat_targets[keep]
