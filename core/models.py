"""Models: the built-in architectures, user factories behind an allow-list, and safetensors weights.

Every model takes a batch of shape (N, *input_shape) and returns logits of shape (N, num_classes).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import ModelLoadFailed
from core.spec import BUILTIN_ARCHS, ModelRef

Builder = Callable[..., nn.Module]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def _int_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name}={value!r} must be a non-empty list of positive integers")
    return [_positive_int(f"{name}[{index}]", item) for index, item in enumerate(value)]


def _sequence_shape(arch: str, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """Read (C, L) as C channels of length L and (L,) as one channel: returns (C, L)."""
    if len(input_shape) == 1:
        return 1, input_shape[0]
    if len(input_shape) == 2:
        return input_shape[0], input_shape[1]
    raise ValueError(f"{arch} needs an input shape (L,) or (C, L), got {input_shape}")


class Unflatten1d(nn.Module):
    """Give (N, L) input a channel axis, (N, 1, L); leave (N, C, L) alone."""

    def forward(self, x: Tensor) -> Tensor:
        return x.unsqueeze(1) if x.dim() == 2 else x


def _mlp(*, input_shape: tuple[int, ...], num_classes: int, hidden: Any) -> nn.Module:
    sizes = _int_list("hidden", hidden)
    width = 1
    for size in input_shape:
        width *= size
    layers: list[nn.Module] = [nn.Flatten()]
    for size in sizes:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def _cnn1d(*, input_shape: tuple[int, ...], num_classes: int, channels: Any) -> nn.Module:
    """ConvBase of Greydanus, "Scaling down deep learning" (2020, arXiv 2011.14439)."""
    width = _positive_int("channels", channels)
    in_channels, length = _sequence_shape("cnn1d", input_shape)
    layers: list[nn.Module] = [Unflatten1d()]
    for kernel, source in ((5, in_channels), (3, width), (3, width)):
        layers += [nn.Conv1d(source, width, kernel, stride=2, padding=1), nn.ReLU()]
        # L_out = floor((L + 2 * padding - kernel) / stride) + 1
        length = (length + 2 - kernel) // 2 + 1
        if length < 1:
            raise ValueError(f"cnn1d input length {input_shape[-1]} is too short (needs >= 3)")
    layers += [nn.Flatten(), nn.Linear(width * length, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016, arXiv 1512.03385): two 3x3 convs plus a shortcut."""

    def __init__(self, source: int, width: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(source, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or source != width:
            self.shortcut = nn.Sequential(
                nn.Conv2d(source, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A small ResNet: 3x3 stem, one stage per width (stride 2 between stages), pool, linear."""

    def __init__(
        self, *, in_channels: int, widths: list[int], blocks: int, num_classes: int
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        )
        layers: list[nn.Module] = []
        source = widths[0]
        for stage, width in enumerate(widths):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlock(source, width, stride=stride))
                source = width
        self.stages = nn.Sequential(*layers)
        self.head = nn.Linear(source, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        out = self.stages(self.stem(x))
        logits: Tensor = self.head(out.mean(dim=(2, 3)))
        return logits


def _cnn2d(
    *, input_shape: tuple[int, ...], num_classes: int, widths: Any, blocks: Any
) -> nn.Module:
    if len(input_shape) not in (2, 3):
        raise ValueError(f"cnn2d needs an input shape (H, W) or (C, H, W), got {input_shape}")
    in_channels = input_shape[0] if len(input_shape) == 3 else 1
    return ResNet(
        in_channels=in_channels,
        widths=_int_list("widths", widths),
        blocks=_positive_int("blocks", blocks),
        num_classes=num_classes,
    )


def _as_tokens(x: Tensor) -> Tensor:
    """(N, L) -> (N, L, 1) and (N, C, L) -> (N, L, C): one step or token per position."""
    return x.unsqueeze(-1) if x.dim() == 2 else x.transpose(1, 2)


class LSTMClassifier(nn.Module):
    """An LSTM over the positions of the input, classified from the last step's hidden state."""

    def __init__(self, *, features: int, hidden: int, layers: int, num_classes: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(_as_tokens(x))
        logits: Tensor = self.head(out[:, -1])
        return logits


def _lstm(*, input_shape: tuple[int, ...], num_classes: int, hidden: Any, layers: Any) -> nn.Module:
    features, _ = _sequence_shape("lstm", input_shape)
    return LSTMClassifier(
        features=features,
        hidden=_positive_int("hidden", hidden),
        layers=_positive_int("layers", layers),
        num_classes=num_classes,
    )


class SelfAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017) with separate q, k, v, o linear projections.

    attention(Q, K, V) = softmax(Q K^T / sqrt(d_head)) V, per head, then the output projection.
    """

    def __init__(self, d_model: int, *, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.o = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape

        def split(t: Tensor) -> Tensor:
            return t.reshape(batch, length, self.heads, -1).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)))
        result: Tensor = self.o(out.transpose(1, 2).reshape(batch, length, width))
        return result


class EncoderBlock(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, d_model: int, *, heads: int, ffn: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = SelfAttention(d_model, heads=heads)
        self.norm2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ffn), nn.GELU(), nn.Linear(ffn, d_model))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        result: Tensor = x + self.mlp(self.norm2(x))
        return result


class TransformerClassifier(nn.Module):
    """Positions as tokens: linear embedding, learned positions, encoder blocks, mean pool, head."""

    def __init__(
        self,
        *,
        features: int,
        length: int,
        d_model: int,
        layers: int,
        heads: int,
        ffn: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(features, d_model)
        self.position = nn.Parameter(torch.zeros(1, length, d_model))
        nn.init.normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(
            *(EncoderBlock(d_model, heads=heads, ffn=ffn) for _ in range(layers))
        )
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.embed(_as_tokens(x)) + self.position
        logits: Tensor = self.head(self.norm(self.blocks(tokens).mean(dim=1)))
        return logits


def _transformer(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    d_model: Any,
    layers: Any,
    heads: Any,
    ffn: Any,
) -> nn.Module:
    features, length = _sequence_shape("transformer", input_shape)
    width = _positive_int("d_model", d_model)
    head_count = _positive_int("heads", heads)
    if width % head_count:
        raise ValueError(f"d_model={width} must be a multiple of heads={head_count}")
    return TransformerClassifier(
        features=features,
        length=length,
        d_model=width,
        layers=_positive_int("layers", layers),
        heads=head_count,
        ffn=_positive_int("ffn", ffn),
        num_classes=num_classes,
    )


BUILTINS: dict[str, tuple[Builder, dict[str, Any]]] = {
    "mlp": (_mlp, {"hidden": [64, 32]}),
    "cnn1d": (_cnn1d, {"channels": 25}),
    "cnn2d": (_cnn2d, {"widths": [32, 64], "blocks": 1}),
    "lstm": (_lstm, {"hidden": 64, "layers": 1}),
    "transformer": (_transformer, {"d_model": 32, "layers": 2, "heads": 4, "ffn": 64}),
}


def _builtin_kwargs(arch: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if arch not in BUILTINS:
        raise ModelLoadFailed(
            f"unknown built-in architecture {arch!r}; choose from {BUILTIN_ARCHS}"
        )
    defaults = BUILTINS[arch][1]
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ModelLoadFailed(
            f"{arch} does not take {', '.join(unknown)}; it takes {', '.join(sorted(defaults))}"
        )
    return {**defaults, **kwargs}


def build_builtin(
    arch: str, *, input_shape: tuple[int, ...], num_classes: int, **kwargs: Any
) -> nn.Module:
    """Build a built-in architecture; `kwargs` override its defaults.

    Args:
        arch: "mlp", "cnn1d", "cnn2d", "lstm" or "transformer".
        input_shape: the shape of one example.
        num_classes: the number of logits.
        **kwargs: mlp: hidden=[64, 32]; cnn1d: channels=25; cnn2d: widths=[32, 64], blocks=1
            (basic blocks per stage); lstm: hidden=64, layers=1; transformer: d_model=32,
            layers=2, heads=4, ffn=64.

    Returns:
        A freshly initialised model.

    Raises:
        ModelLoadFailed: unknown architecture or kwargs, or values the architecture cannot use.
    """
    merged = _builtin_kwargs(arch, kwargs)
    shape = tuple(input_shape)
    if not shape or any(isinstance(size, bool) or size < 1 for size in shape):
        raise ModelLoadFailed(f"{arch}: input shape {shape} must be positive sizes")
    if num_classes < 2:
        raise ModelLoadFailed(f"{arch}: num_classes={num_classes} must be at least 2")
    try:
        return BUILTINS[arch][0](input_shape=shape, num_classes=num_classes, **merged)
    except ValueError as error:
        raise ModelLoadFailed(f"{arch}: {error}") from error


def _entrypoint_allowed(module: str, allowed_prefixes: Sequence[str] | None) -> bool:
    if allowed_prefixes is None:
        return True
    return any(module == prefix or module.startswith(f"{prefix}.") for prefix in allowed_prefixes)


def load_entrypoint(
    entrypoint: str, *, kwargs: Mapping[str, Any], allowed_prefixes: Sequence[str] | None
) -> nn.Module:
    """Import `package.module:factory` and call it with `kwargs`.

    Args:
        entrypoint: "package.module:factory".
        kwargs: passed to the factory.
        allowed_prefixes: module prefixes that may be imported; None allows any module (local
            use), an empty sequence refuses all.

    Returns:
        The model the factory returned.

    Raises:
        ModelLoadFailed: refused by the allow-list, import failure, missing attribute, factory
            error, or a result that is not an nn.Module.
    """
    module_name, sep, attribute = entrypoint.partition(":")
    if not sep or not module_name or not attribute:
        raise ModelLoadFailed(
            f"entrypoint {entrypoint!r} is not of the form 'package.module:factory'"
        )
    if not _entrypoint_allowed(module_name, allowed_prefixes):
        raise ModelLoadFailed(f"entrypoint module {module_name!r} is not in the allowed prefixes")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ModelLoadFailed(f"cannot import {module_name!r}: {error}") from error
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ModelLoadFailed(f"{module_name!r} has no callable {attribute!r}")
    try:
        model = factory(**kwargs)
    except Exception as error:
        raise ModelLoadFailed(f"{entrypoint} failed: {type(error).__name__}: {error}") from error
    if not isinstance(model, nn.Module):
        raise ModelLoadFailed(
            f"{entrypoint} returned {type(model).__name__}, not a torch nn.Module"
        )
    return model


def _check_output(model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int) -> None:
    """Forward two zero examples so a model that does not fit the task fails at load time."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape))
    except Exception as error:
        raise ModelLoadFailed(
            f"model cannot take input of shape (N, {', '.join(map(str, input_shape))}): {error}"
        ) from error
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or tuple(out.shape) != (2, num_classes):
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ModelLoadFailed(f"model output {shape} is not logits of shape (N, {num_classes})")


def build_model(
    ref: ModelRef,
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    allowed_entrypoints: Sequence[str] | None = None,
) -> nn.Module:
    """Build the model a job names (weights are loaded separately with `load_weights`).

    Args:
        ref: a built-in architecture or a factory entry point, with kwargs.
        input_shape: the shape of one example of the task.
        num_classes: the task's number of classes.
        allowed_entrypoints: module prefixes user factories may come from; None allows any.

    Returns:
        A model mapping (N, *input_shape) to (N, num_classes).

    Raises:
        ModelLoadFailed: the model cannot be built or does not fit the task's shapes.
    """
    if ref.arch is not None:
        return build_builtin(
            ref.arch, input_shape=input_shape, num_classes=num_classes, **ref.kwargs
        )
    if ref.entrypoint is None:
        raise ModelLoadFailed("the model names neither a built-in arch nor an entrypoint")
    model = load_entrypoint(ref.entrypoint, kwargs=ref.kwargs, allowed_prefixes=allowed_entrypoints)
    _check_output(model, input_shape=tuple(input_shape), num_classes=num_classes)
    return model


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into `model` in place; nothing is ever unpickled.

    Args:
        model: the model whose state dict the file must match exactly.
        path: the `.safetensors` file.

    Raises:
        ModelLoadFailed: not a safetensors file, or missing/unexpected keys or shapes that differ
            (the message names the first offending tensor).
    """
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as error:
        raise ModelLoadFailed(f"{path.name} is not a safetensors file ({error})") from error
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise ModelLoadFailed(f"{path.name}: tensor {missing[0]!r} is missing")
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise ModelLoadFailed(f"{path.name}: unexpected tensor {unexpected[0]!r}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelLoadFailed(
                f"{path.name}: tensor {key!r} has shape {tuple(state[key].shape)}, "
                f"the model expects {tuple(tensor.shape)}"
            )
    model.load_state_dict(state, strict=True)


def architecture(
    ref: ModelRef, *, input_shape: tuple[int, ...], num_classes: int
) -> dict[str, Any]:
    """A JSON-able recipe that `build_from_architecture` turns back into the same model.

    Args:
        ref: the model reference of the job.
        input_shape: the shape of one example.
        num_classes: the number of classes.

    Returns:
        {"arch" or "entrypoint": ..., "kwargs": {...}, "input_shape": [...], "num_classes": n};
        built-in kwargs include the defaults, so the recipe does not depend on them.
    """
    recipe: dict[str, Any]
    if ref.arch is not None:
        recipe = {"arch": ref.arch, "kwargs": _builtin_kwargs(ref.arch, ref.kwargs)}
    else:
        recipe = {"entrypoint": ref.entrypoint, "kwargs": dict(ref.kwargs)}
    recipe["input_shape"] = [int(size) for size in input_shape]
    recipe["num_classes"] = int(num_classes)
    return recipe


def build_from_architecture(
    arch: Mapping[str, Any], *, allowed_entrypoints: Sequence[str] | None = None
) -> nn.Module:
    """Rebuild a freshly initialised model from a recipe made by `architecture`.

    Args:
        arch: the recipe.
        allowed_entrypoints: module prefixes a factory may come from; None allows any.

    Returns:
        The model, without weights.

    Raises:
        ModelLoadFailed: the recipe is malformed or the model cannot be built.
    """
    shape = arch.get("input_shape")
    classes = arch.get("num_classes")
    kwargs = arch.get("kwargs", {})
    if not isinstance(shape, (list, tuple)) or not all(
        isinstance(size, int) and not isinstance(size, bool) for size in shape
    ):
        raise ModelLoadFailed(f"architecture input_shape {shape!r} is not a list of integers")
    if isinstance(classes, bool) or not isinstance(classes, int):
        raise ModelLoadFailed(f"architecture num_classes {classes!r} is not an integer")
    if not isinstance(kwargs, Mapping):
        raise ModelLoadFailed(f"architecture kwargs {kwargs!r} is not a mapping")
    try:
        ref = ModelRef(
            arch=arch.get("arch"), entrypoint=arch.get("entrypoint"), kwargs=dict(kwargs)
        )
    except ValueError as error:
        first = str(error).splitlines()
        raise ModelLoadFailed(f"architecture is invalid: {' '.join(first[:3])}") from error
    return build_model(
        ref,
        input_shape=tuple(shape),
        num_classes=classes,
        allowed_entrypoints=allowed_entrypoints,
    )
