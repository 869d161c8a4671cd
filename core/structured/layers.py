"""The layers channel pruning works on: their widths, the logits layer, the ones kept whole."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import cast

import torch
from torch import Tensor, nn

PRUNABLE = (nn.modules.conv._ConvNd, nn.Linear, nn.LSTM)


def round_width(width: float, *, multiple: int, maximum: int) -> int:
    """Round a channel width up to a hardware-friendly multiple.

    Formula: ``min(maximum, max(multiple, ceil(width / multiple) * multiple))``.

    Args:
        width: the unrounded width, e.g. ``dense * (1 - ratio)``.
        multiple: widths become multiples of this (8 suits tensor cores and SIMD lanes).
        maximum: the current width; the result never exceeds it.

    Returns:
        The width to keep.

    Raises:
        ValueError: for a negative width, a multiple below 1 or a maximum below 1.
    """
    if not math.isfinite(width) or width < 0:
        raise ValueError(f"width must be a finite number >= 0, got {width!r}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple!r}")
    if maximum < 1:
        raise ValueError(f"maximum must be >= 1, got {maximum!r}")
    # the small tolerance keeps 48.000000001 (float noise from dense * (1 - ratio)) at 48
    rounded = math.ceil(width / multiple - 1e-9) * multiple
    return min(maximum, max(multiple, rounded))


def check_scores(model: nn.Module, scores: Mapping[str, Tensor]) -> None:
    """Raise ValueError for a score that names no tensor of `model` or has another shape."""
    state = model.state_dict()
    for key, score in scores.items():
        if key not in state:
            raise ValueError(f"scores[{key!r}] names no tensor of the model")
        if tuple(score.shape) != tuple(state[key].shape):
            raise ValueError(
                f"scores[{key!r}] has shape {tuple(score.shape)}, the weight has "
                f"{tuple(state[key].shape)}"
            )


def out_width(module: nn.Module) -> int:
    """Output channels of a Linear, LSTM (hidden size) or convolution."""
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    if isinstance(module, nn.LSTM):
        return int(module.hidden_size)
    return int(cast(nn.modules.conv._ConvNd, module).out_channels)


def dense_widths_of(
    prunable: Mapping[str, nn.Module], dense_widths: Mapping[str, int] | None
) -> dict[str, int]:
    """The dense output widths: `dense_widths` checked against the layers, or the widths now."""
    if dense_widths is None:
        return {name: out_width(m) for name, m in prunable.items()}
    dense = dict(dense_widths)
    for name, module in prunable.items():
        if name not in dense:
            raise ValueError(f"dense_widths has no entry for layer {name!r}")
        if dense[name] < out_width(module):
            raise ValueError(
                f"dense_widths[{name!r}] = {dense[name]} is below the current width "
                f"{out_width(module)}"
            )
    return dense


def trace_output(
    model: nn.Module, example_inputs: Tensor, prunable: Mapping[str, nn.Module]
) -> tuple[object, str | None]:
    """Run one forward pass; return the output and the name of the layer that makes the logits.

    That layer is the prunable layer whose output tensor is the model's output, else the last
    Linear that ran.
    """
    outputs: list[tuple[str, object]] = []

    def recorder(name: str) -> object:
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            outputs.append((name, output))

        return hook

    handles = [m.register_forward_hook(recorder(n)) for n, m in prunable.items()]  # type: ignore[arg-type]
    try:
        with torch.no_grad():
            out = model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    for name, output in reversed(outputs):
        if output is out:
            return out, name
    linears = [name for name, _ in outputs if isinstance(prunable[name], nn.Linear)]
    return out, (linears[-1] if linears else None)


def fixed_layers(
    prunable: Mapping[str, nn.Module],
    modules: Mapping[str, nn.Module],
    *,
    classifier: str | None,
    ignored: Collection[str],
) -> dict[str, str]:
    """Layers whose output channels stay, with the reason."""
    skips: dict[str, str] = {}
    if classifier is not None:
        skips[classifier] = "final classifier (its outputs are the logits)"
    for name in ignored:
        for sub, _ in modules[name].named_modules(prefix=name):
            if sub in prunable:
                skips.setdefault(sub, "ignored by the caller")
    for name, module in modules.items():
        if isinstance(module, nn.LSTM):
            skips.setdefault(name, "LSTM hidden units (torch-pruning cannot prune them)")
        elif isinstance(module, nn.MultiheadAttention):
            skips.setdefault(name, "multi-head attention (head structure)")
    return skips
