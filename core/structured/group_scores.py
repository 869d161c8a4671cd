"""Ranking the channels of a dependency group from per-weight scores."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch_pruning as tp
from torch import Tensor, nn

_EPS = 1e-12


class ScoreImportance(tp.importance.Importance):  # type: ignore[misc]
    """Group score of each root channel from per-weight scores.

    For every layer in a dependency group: sum its scores over the channel's slice (rows for
    output channels, columns for input channels), divide by the layer's mean slice score so
    layers of different scale weigh alike, then sum over the group. Layers without scores use
    |w|, so a group is always ranked.
    """

    def __init__(
        self,
        *,
        graph: tp.DependencyGraph,
        names: Mapping[nn.Module, str],
        scores: Mapping[str, Tensor],
    ) -> None:
        self.graph = graph
        self.names = names
        self.scores = scores

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> Tensor:
        total = torch.zeros(len(group[0].idxs), dtype=torch.float64)
        for item in group:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            root_idxs = item.root_idxs
            if not isinstance(module, nn.Module) or root_idxs is None or None in root_idxs:
                continue
            local = self._slice_scores(module, dep.handler, idxs)
            if local is None or local.numel() != len(root_idxs):
                continue
            local = local / (local.mean() + _EPS)
            total.scatter_add_(0, torch.tensor(root_idxs, dtype=torch.long), local)
        return total

    def _slice_scores(self, module: nn.Module, handler: object, idxs: list[int]) -> Tensor | None:
        is_out = self.graph.is_out_channel_pruning_fn(handler)
        if not is_out and not self.graph.is_in_channel_pruning_fn(handler):
            return None
        attr = "weight_ih_l0" if isinstance(module, nn.LSTM) else "weight"
        weight = getattr(module, attr, None)
        if not isinstance(weight, Tensor):
            return None
        key = f"{self.names[module]}.{attr}"
        score = self.scores.get(key)
        values = (score if score is not None else weight).detach().abs().double().cpu()
        if isinstance(module, nn.LSTM) and is_out:
            return None
        transposed = bool(getattr(module, "transposed", False))
        if values.dim() == 1:
            dim = 0
        elif is_out:
            dim = 1 if transposed else 0
        else:
            if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
                return None  # input columns of a grouped conv do not map one-to-one
            dim = 0 if transposed else 1
        if max(idxs, default=-1) >= values.shape[dim]:
            return None
        picked = values.index_select(dim, torch.tensor(idxs, dtype=torch.long))
        return picked.movedim(dim, 0).reshape(len(idxs), -1).sum(dim=1)
