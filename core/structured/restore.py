"""Rebuilding a channel-pruned model's shapes on a freshly built dense model.

A pruned model is described by `shapes_of`: the shape of every state-dict tensor, plus the
module attributes that tensor shapes alone do not determine, under keys ``"<module>#<attr>"``:
every convolution's ``groups`` (a depthwise conv that lost channels has fewer groups) and the
head counts and sizes of attention modules (``num_attention_heads``, ``all_head_size``, ...),
which forward passes use to split projections into heads. `resize_to_shapes` applies such a
description to a dense model of the same architecture, so that the pruned state dict loads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

ATTRIBUTE_SEPARATOR = "#"
# integer attributes attention modules commonly split their projections by
HEAD_ATTRIBUTES = (
    "num_attention_heads",
    "attention_head_size",
    "all_head_size",
    "num_heads",
    "num_key_value_heads",
    "head_dim",
    "n_heads",
    "n_head",
)


def _recorded_attributes(module: nn.Module) -> list[str]:
    if isinstance(module, nn.modules.conv._ConvNd):
        return ["groups"]
    if isinstance(module, nn.MultiheadAttention):
        return []  # never pruned; its sizes follow its in_proj tensors
    values = module.__dict__
    return [
        attr
        for attr in HEAD_ATTRIBUTES
        if isinstance(values.get(attr), int) and not isinstance(values[attr], bool)
    ]


def shapes_of(model: nn.Module) -> dict[str, list[int]]:
    """Describe the sizes of `model`: tensor shapes and the attributes they do not determine.

    Args:
        model: any module.

    Returns:
        State-dict key -> shape as a list of ints, and ``"<module>#<attr>"`` -> ``[value]`` for
        every convolution's groups and every attention module's head attributes.
    """
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    for name, module in model.named_modules():
        for attr in _recorded_attributes(module):
            shapes[f"{name}{ATTRIBUTE_SEPARATOR}{attr}"] = [int(getattr(module, attr))]
    return shapes


def resize_to_shapes(model: nn.Module, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give a freshly built dense model the sizes recorded by `shapes_of`, in place.

    Recorded module attributes (conv groups, attention head counts) are set first; then every
    parameter and buffer is replaced by an uninitialised tensor of the recorded shape (load the
    pruned state dict afterwards), and module attributes follow: Linear in/out_features, ConvNd
    in/out_channels, BatchNorm/InstanceNorm num_features, GroupNorm num_channels, LayerNorm
    normalized_shape, Embedding sizes, LSTM input/hidden sizes.

    Args:
        model: a dense model of the same architecture as the pruned one.
        shapes: the description returned by `shapes_of` on the pruned model (descriptions
            without attribute entries, from older artifacts, are accepted).

    Raises:
        ValueError: naming the tensor or attribute that is missing, unknown or cannot be applied.
    """
    tensors = {k: v for k, v in shapes.items() if ATTRIBUTE_SEPARATOR not in k}
    attributes = {k: v for k, v in shapes.items() if ATTRIBUTE_SEPARATOR in k}
    _set_attributes(model, attributes)
    state = model.state_dict(keep_vars=True)
    for key in state:
        if key not in tensors:
            raise ValueError(f"shapes has no entry for tensor {key!r}")
    for key, shape in tensors.items():
        if key not in state:
            raise ValueError(f"tensor {key!r} is not in the model")
        old = state[key]
        new_shape = tuple(int(s) for s in shape)
        if len(new_shape) != old.dim() or any(s < 0 for s in new_shape):
            raise ValueError(
                f"tensor {key!r}: shape {list(new_shape)} cannot replace {list(old.shape)}"
            )
        path, _, attr = key.rpartition(".")
        owner = model.get_submodule(path)
        fresh = torch.empty(new_shape, dtype=old.dtype, device=old.device)
        if attr in owner._parameters:
            setattr(owner, attr, nn.Parameter(fresh, requires_grad=old.requires_grad))
        elif attr in owner._buffers:
            owner._buffers[attr] = fresh
        else:
            raise ValueError(f"tensor {key!r} is neither a parameter nor a buffer")
    for name, module in model.named_modules():
        _update_attributes(name, module)


def _set_attributes(model: nn.Module, attributes: Mapping[str, Sequence[int]]) -> None:
    modules = dict(model.named_modules())
    for key, value in attributes.items():
        path, _, attr = key.rpartition(ATTRIBUTE_SEPARATOR)
        module = modules.get(path)
        if module is None:
            raise ValueError(f"attribute {key!r}: module {path!r} is not in the model")
        if attr not in _recorded_attributes(module):
            raise ValueError(f"attribute {key!r} is not a size attribute of {path!r}")
        if len(value) != 1 or int(value[0]) < 1:
            raise ValueError(f"attribute {key!r}: {list(value)} is not one positive integer")
        setattr(module, attr, int(value[0]))


def _update_attributes(name: str, module: nn.Module) -> None:
    prefix = f"{name}." if name else ""

    def agree(attr: str, dim: int, size: int) -> None:
        tensor = getattr(module, attr, None)
        if isinstance(tensor, Tensor) and tensor.dim() > dim and tensor.shape[dim] != size:
            raise ValueError(
                f"tensor {prefix}{attr!s} has size {tensor.shape[dim]} in dim {dim}, "
                f"expected {size}"
            )

    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
        agree("bias", 0, module.out_features)
    elif isinstance(module, nn.modules.conv._ConvNd):
        _update_conv(prefix, module)
        agree("bias", 0, module.out_channels)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        source = module.weight if module.weight is not None else module.running_mean
        if source is not None:
            module.num_features = int(source.shape[0])
            for attr in ("weight", "bias", "running_mean", "running_var"):
                agree(attr, 0, module.num_features)
    elif isinstance(module, nn.GroupNorm):
        if module.weight is not None:
            module.num_channels = int(module.weight.shape[0])
            if module.num_channels % module.num_groups:
                raise ValueError(
                    f"tensor {prefix}weight: {module.num_channels} channels do not split "
                    f"into {module.num_groups} groups"
                )
            agree("bias", 0, module.num_channels)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            module.normalized_shape = tuple(int(s) for s in module.weight.shape)
            if module.bias is not None and tuple(module.bias.shape) != module.normalized_shape:
                raise ValueError(f"tensor {prefix}bias: shape differs from {prefix}weight")
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape
    elif isinstance(module, nn.LSTM):
        _update_lstm(prefix, module)


def _update_conv(prefix: str, module: nn.modules.conv._ConvNd) -> None:
    weight = module.weight
    if tuple(weight.shape[2:]) != tuple(module.kernel_size):
        raise ValueError(f"tensor {prefix}weight: kernel {list(weight.shape[2:])} differs")
    if module.transposed:
        module.in_channels = int(weight.shape[0])
        module.out_channels = int(weight.shape[1]) * module.groups
    else:
        module.out_channels = int(weight.shape[0])
        module.in_channels = int(weight.shape[1]) * module.groups
    if module.in_channels % module.groups or module.out_channels % module.groups:
        raise ValueError(
            f"tensor {prefix}weight: {module.in_channels} -> {module.out_channels} channels do "
            f"not split into {module.groups} groups"
        )


def _update_lstm(prefix: str, module: nn.LSTM) -> None:
    weight_ih, weight_hh = (
        module.get_parameter("weight_ih_l0"),
        module.get_parameter("weight_hh_l0"),
    )
    module.input_size = int(weight_ih.shape[1])
    module.hidden_size = int(weight_hh.shape[0]) // 4
    gates = 4 * module.hidden_size
    for layer_name in module._flat_weights_names:
        rows = module.get_parameter(layer_name).shape[0]
        if ("_ih_" in layer_name or "_hh_" in layer_name) and rows != gates:
            raise ValueError(f"tensor {prefix}{layer_name}: {rows} rows, expected {gates}")
    module._init_flat_weights()
