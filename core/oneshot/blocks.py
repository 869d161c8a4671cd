"""Where a transformer's blocks are and which of their layers are pruned.

A block is one decoder or encoder layer (LlamaDecoderLayer, BertLayer, GPT2Block): the children
of the model's largest ModuleList whose every child holds a prunable layer. Prunable layers are
`nn.Linear` and the transposed linear that GPT-2 uses (a module named `Conv1D` whose weight is
stored (in, out)); they are handled through their (out, in) matrix, so the methods see one
shape convention.
"""

from __future__ import annotations

from torch import Tensor, nn


def _is_transposed_linear(module: nn.Module) -> bool:
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, Tensor)
        and weight.dim() == 2
        and hasattr(module, "nf")
    )


def is_prunable(module: nn.Module) -> bool:
    """True for the layers one-shot pruning sparsifies: linear maps (GPT-2's Conv1D included)."""
    return isinstance(module, nn.Linear) or _is_transposed_linear(module)


def prunable_layers(block: nn.Module) -> dict[str, nn.Module]:
    """The prunable layers of `block`, by their name inside it, in definition order."""
    return {name: module for name, module in block.named_modules() if is_prunable(module)}


def weight_matrix(module: nn.Module) -> Tensor:
    """The layer's weight as an (out_features, in_features) tensor (a view, not a copy)."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    return weight.t() if _is_transposed_linear(module) else weight


def set_weight_matrix(module: nn.Module, matrix: Tensor) -> None:
    """Write an (out_features, in_features) matrix into the layer's weight, in its dtype."""
    weight = module.weight
    assert isinstance(weight, Tensor)
    value = matrix.t() if _is_transposed_linear(module) else matrix
    weight.data.copy_(value.to(dtype=weight.dtype, device=weight.device))


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The model's sequence of blocks and its qualified name (e.g. "model.layers").

    Raises:
        ValueError: the model has no ModuleList of blocks holding linear layers.
    """
    best: tuple[str, nn.ModuleList] | None = None
    best_size = 0
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if not all(prunable_layers(child) for child in module):
            continue
        size = sum(parameter.numel() for parameter in module.parameters())
        if size > best_size:
            best, best_size = (name, module), size
    if best is None:
        raise ValueError(
            f"{type(model).__name__} has no list of transformer blocks with linear layers; "
            "one-shot pruning needs a model built of repeated blocks"
        )
    return best
