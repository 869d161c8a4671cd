"""Structured (channel) pruning: removal, shape restore at load, and counting.

`removal` cuts channels and attention heads through Torch-Pruning's dependency graph, `target`
finds the channel ratio that removes a requested fraction of parameters, `restore` rebuilds the
pruned sizes on a freshly built model, `counting` measures what is gone.
"""

from core.structured.counting import (
    count_macs_params,
    count_params,
    nonzero_params,
    removed_by_layer,
    removed_fraction,
)
from core.structured.layers import out_width, round_width
from core.structured.removal import ChannelPruneReport, prune_channels
from core.structured.restore import resize_to_shapes, shapes_of

__all__ = [
    "ChannelPruneReport",
    "count_macs_params",
    "count_params",
    "nonzero_params",
    "out_width",
    "prune_channels",
    "removed_by_layer",
    "removed_fraction",
    "resize_to_shapes",
    "round_width",
    "shapes_of",
]
