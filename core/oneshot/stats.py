"""Statistics of each prunable layer's inputs over the calibration tokens, from forward hooks."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn


class InputStats:
    """Running sums over the calibration tokens x (rows of the layer's input, in float32).

    `squared_norms()[j]` = sum_t x_tj^2 (Wanda's ||X_j||_2 is its square root);
    `hessian()` = 2 X X^T / n, the Hessian of the layer's squared reconstruction error that
    SparseGPT inverts (Frantar & Alistarh 2023, eq. 1); kept only when asked for.
    """

    def __init__(self, features: int, *, hessian: bool, device: torch.device) -> None:
        self.features = features
        self.tokens = 0
        self._squares = torch.zeros(features, dtype=torch.float32, device=device)
        self._outer = (
            torch.zeros(features, features, dtype=torch.float32, device=device) if hessian else None
        )

    def add(self, inputs: Tensor, keep: Tensor | None = None) -> None:
        """Count the rows of `inputs`; with `keep` (one flag per row, e.g. the attention mask of
        a (batch, seq) batch), only the rows it marks."""
        rows = inputs.detach().reshape(-1, self.features).to(torch.float32)
        if keep is not None:
            rows = rows[keep.reshape(-1).to(device=rows.device, dtype=torch.bool)]
        self.tokens += rows.shape[0]
        self._squares += rows.square().sum(dim=0)
        if self._outer is not None:
            self._outer.addmm_(rows.t(), rows)

    def squared_norms(self) -> Tensor:
        return self._squares

    def norms(self) -> Tensor:
        """||X_j||_2 over every calibration token, per input feature."""
        return self._squares.sqrt()

    def hessian(self) -> Tensor:
        """2 X X^T / n (features x features); raises if it was not collected."""
        if self._outer is None:
            raise RuntimeError("this layer's Hessian was not collected")
        return self._outer * (2.0 / max(self.tokens, 1))

    def nbytes(self) -> int:
        held = self._squares.numel() + (0 if self._outer is None else self._outer.numel())
        return 4 * held


@dataclass
class TokenFilter:
    """The tokens of the batch now running that the statistics count: its attention mask
    (padding positions are not calibration data), or None for all of them."""

    current: Tensor | None = None


@contextmanager
def recording_inputs(
    layers: Mapping[str, nn.Module],
    *,
    hessian: bool,
    device: torch.device,
    tokens: TokenFilter | None = None,
) -> Iterator[dict[str, InputStats]]:
    """Collect InputStats for every layer while the block runs inside the context; with
    `tokens`, only the positions its current mask marks (a layer whose input rows do not
    line up with the mask's positions counts every row)."""
    stats: dict[str, InputStats] = {}
    handles = []
    for name, module in layers.items():
        weight = module.weight
        assert isinstance(weight, Tensor)
        features = weight.shape[1] if isinstance(module, nn.Linear) else weight.shape[0]
        stats[name] = InputStats(features, hessian=hessian, device=device)

        def hook(
            _module: nn.Module, args: tuple[Any, ...], *, into: InputStats = stats[name]
        ) -> None:
            keep = tokens.current if tokens is not None else None
            rows = args[0].numel() // into.features
            into.add(args[0], keep if keep is not None and keep.numel() == rows else None)

        handles.append(module.register_forward_pre_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
