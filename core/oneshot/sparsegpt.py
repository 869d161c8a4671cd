"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately
Pruned in One-Shot", arXiv 2301.00774).

For a layer with weight W (out x in) and calibration inputs X (in x n), the layer-wise problem
is min ||W X - W' X||^2 over W' with the mask's zeros. With H = 2 X X^T / n + lambda I
(lambda: `dampening` times the mean of diag(H)), the columns are visited left to right; pruning
column j's masked weights w_j and spreading the error over the columns not yet visited is the
OBS update  W[:, j:] -= (w_j - q_j) / [H^-1]_jj * [H^-1]_{j, j:}, computed with the rows of the
upper Cholesky factor of H^-1 (the inverse Hessians of the shrinking column sets, all at once).
Columns go in blocks of `block_size`: at the start of each block the mask for its columns is
chosen from w^2 / [H^-1]_jj^2 (adaptive mask selection), the in-block updates are applied column
by column and the rest of the matrix receives the block's accumulated error in one product.
For N:M the mask of each run of M columns is chosen when the run is reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from core.oneshot.methods import LayerTarget
from core.oneshot.selection import nm_mask, unstructured_mask
from core.oneshot.stats import InputStats

if TYPE_CHECKING:
    from core.oneshot.config import OneShotConfig

CHOLESKY_RETRIES = 4


def inverse_hessian_factor(hessian: Tensor, dampening: float) -> Tensor:
    """The upper Cholesky factor U of (H + lambda I)^-1 (U^T U = (H + lambda I)^-1).

    lambda = dampening * mean(diag H); when H + lambda I is not positive definite in floating
    point, lambda grows tenfold, a few times, before giving up.
    """
    hessian = hessian.clone()
    dead = torch.diagonal(hessian) == 0
    hessian[dead, dead] = 1.0  # inputs that never fire: any positive curvature will do
    damp = dampening * float(torch.diagonal(hessian).mean())
    eye = torch.eye(hessian.shape[0], dtype=hessian.dtype, device=hessian.device)
    for _ in range(CHOLESKY_RETRIES):
        lower, info = torch.linalg.cholesky_ex(hessian + damp * eye)
        if int(info) == 0:
            inverse = torch.cholesky_inverse(lower)
            upper, info = torch.linalg.cholesky_ex(inverse, upper=True)
            if int(info) == 0:
                factor: Tensor = upper
                return factor
        damp *= 10.0
    raise ValueError("the calibration Hessian is not positive definite even with dampening")


class SparseGPTOneShot:
    """SparseGPT: OBS weight reconstruction with the mask chosen per block of columns."""

    name: ClassVar[str] = "sparsegpt"
    needs_inputs: ClassVar[bool] = True
    needs_hessian: ClassVar[bool] = True

    def __init__(self, block_size: int = 128, dampening: float = 0.01) -> None:
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        if not 0.0 < dampening <= 1.0:
            raise ValueError(f"dampening must be in (0, 1], got {dampening}")
        self.block_size = block_size
        self.dampening = dampening

    @classmethod
    def from_config(cls, config: OneShotConfig) -> SparseGPTOneShot:
        return cls(config.sparsegpt_block_size, config.sparsegpt_dampening)

    def prune(self, weight: Tensor, stats: InputStats | None, target: LayerTarget) -> Tensor:
        if stats is None:
            raise ValueError("sparsegpt needs the layer's calibration inputs")
        return sparsegpt_prune(
            weight,
            stats.hessian().to(weight.device),
            target,
            block_size=self.block_size,
            dampening=self.dampening,
        )


def sparsegpt_prune(
    weight: Tensor,
    hessian: Tensor,
    target: LayerTarget,
    *,
    block_size: int = 128,
    dampening: float = 0.01,
) -> Tensor:
    """The pruned (out, in) float32 matrix; `hessian` is 2 X X^T / n (in x in)."""
    work = weight.detach().to(torch.float32).clone()
    columns = work.shape[1]
    factor = inverse_hessian_factor(hessian.to(torch.float32), dampening)
    m = target.nm[1] if target.nm is not None else 1
    if target.nm is not None and columns % m:
        raise ValueError(f"a layer with {columns} inputs cannot hold the {target.nm} pattern")
    block_size = max(m, block_size - block_size % m)
    for start in range(0, columns, block_size):
        end = min(start + block_size, columns)
        _prune_block(work, factor, start, end, target)
    return work


def _prune_block(work: Tensor, factor: Tensor, start: int, end: int, target: LayerTarget) -> None:
    block = work[:, start:end].clone()
    block_factor = factor[start:end, start:end]
    diagonal = torch.diagonal(block_factor)
    errors = torch.zeros_like(block)
    if target.nm is None:
        mask = unstructured_mask(block.square() / diagonal.square(), target.sparsity, "layer")
    else:
        mask = torch.zeros_like(block, dtype=torch.bool)
    for column in range(end - start):
        if target.nm is not None and column % target.nm[1] == 0:
            n, m = target.nm
            window = slice(column, column + m)
            saliency = block[:, window].square() / diagonal[window].square()
            mask[:, window] = nm_mask(saliency, n, m)
        w = block[:, column]
        kept = w.masked_fill(mask[:, column], 0.0)
        error = (w - kept) / block_factor[column, column]
        block[:, column:] -= error.unsqueeze(1) * block_factor[column, column:].unsqueeze(0)
        block[:, column] = kept
        errors[:, column] = error
    work[:, start:end] = block
    work[:, end:] -= errors @ factor[start:end, end:]
