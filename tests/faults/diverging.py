"""A user model (entry point) whose training turns NaN once it is pruned past a threshold.

It stands for a model/task pair whose fine-tuning diverges at high sparsity; it is deterministic,
so a run always fails at the same step, after the checkpoints of the steps before it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DivergingMLP(nn.Module):
    """features -> 16 -> classes; outputs NaN while more than `diverge_above` of it is zero."""

    def __init__(self, *, features: int, classes: int, diverge_above: float) -> None:
        super().__init__()
        if not 0.0 < diverge_above < 1.0:
            raise ValueError(f"diverge_above {diverge_above} must be in (0, 1)")
        self.net = nn.Sequential(nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, classes))
        self.diverge_above = diverge_above

    def zero_fraction(self) -> float:
        weights = [m.weight for m in self.net if isinstance(m, nn.Linear)]
        zeros = sum(int((w == 0).sum()) for w in weights)
        return zeros / sum(w.numel() for w in weights)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(x)
        if self.zero_fraction() > self.diverge_above:
            return out * torch.tensor(float("nan"))
        return out


def build(*, features: int, classes: int, diverge_above: float = 0.3) -> nn.Module:
    """The entry point named in the job spec: `tests.faults.diverging:build`."""
    return DivergingMLP(features=features, classes=classes, diverge_above=diverge_above)
