"""Models: building the built-ins, user factories behind an allow-list, safetensors weights."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from core.contract.entrypoints import ANY_MODULE, EntrypointAllowList
from core.errors import ModelLoadFailed
from core.registries import ARCHITECTURES
from core.spec import ModelRef


def _builtin_kwargs(arch: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    if arch not in ARCHITECTURES:
        raise ModelLoadFailed(
            f"unknown built-in architecture {arch!r}; allowed: {ARCHITECTURES.allowed()}"
        )
    defaults = ARCHITECTURES.info(arch)["defaults"]
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
        builder = ARCHITECTURES.resolve(arch)
        model: nn.Module = builder(input_shape=shape, num_classes=num_classes, **merged)
        return model
    except ValueError as error:
        raise ModelLoadFailed(f"{arch}: {error}") from error


def load_entrypoint(
    entrypoint: str, *, kwargs: Mapping[str, Any], allowed_prefixes: EntrypointAllowList
) -> nn.Module:
    """Import `package.module:factory` and call it with `kwargs`.

    Args:
        entrypoint: "package.module:factory".
        kwargs: passed to the factory.
        allowed_prefixes: the modules that may be imported (`EntrypointAllowList.any()` for
            local use; `.only(prefixes)` admits those modules alone, none when empty).

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
    if not allowed_prefixes.allows(module_name):
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


INPUT_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def _check_output(
    model: nn.Module, *, input_shape: tuple[int, ...], num_classes: int, input_dtype: str
) -> None:
    """Forward two zero examples so a model that does not fit the task fails at load time."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *input_shape, dtype=INPUT_DTYPES[input_dtype]))
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
    allowed_entrypoints: EntrypointAllowList = ANY_MODULE,
    input_dtype: str = "float32",
    check_output: bool = True,
) -> nn.Module:
    """Build the model a job names (weights are loaded separately with `load_weights`).

    Args:
        ref: a built-in architecture or a factory entry point, with kwargs.
        input_shape: the shape of one example of the task.
        num_classes: the task's number of classes.
        input_dtype: "float32", or "int64" for integer features such as token ids.
        allowed_entrypoints: the modules user factories may come from (default: any).
        check_output: run one example through a user factory's model to check its output
            shape (off when sizing on the `meta` device, where a forward may not run).

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
    if not check_output:
        return model
    _check_output(
        model, input_shape=tuple(input_shape), num_classes=num_classes, input_dtype=input_dtype
    )
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
        if state[key].is_floating_point() and not bool(state[key].isfinite().all()):
            raise ModelLoadFailed(
                f"{path.name}: tensor {key!r} holds NaN or infinite values; weights must be finite"
            )
    model.load_state_dict(state, strict=True)


def architecture(
    ref: ModelRef, *, input_shape: tuple[int, ...], num_classes: int, input_dtype: str = "float32"
) -> dict[str, Any]:
    """A JSON-able recipe that `build_from_architecture` turns back into the same model.

    Args:
        ref: the model reference of the job.
        input_shape: the shape of one example.
        num_classes: the number of classes.
        input_dtype: "float32", or "int64" for integer features (recorded only then).

    Returns:
        {"arch" or "entrypoint": ..., "kwargs": {...}, "input_shape": [...], "num_classes": n},
        with "input_dtype": "int64" for integer inputs; built-in kwargs include the defaults,
        so the recipe does not depend on them.
    """
    recipe: dict[str, Any]
    if ref.arch is not None:
        recipe = {"arch": ref.arch, "kwargs": _builtin_kwargs(ref.arch, ref.kwargs)}
    else:
        recipe = {"entrypoint": ref.entrypoint, "kwargs": dict(ref.kwargs)}
    recipe["input_shape"] = [int(size) for size in input_shape]
    recipe["num_classes"] = int(num_classes)
    if input_dtype != "float32":
        recipe["input_dtype"] = input_dtype
    return recipe


def build_from_architecture(
    arch: Mapping[str, Any], *, allowed_entrypoints: EntrypointAllowList = ANY_MODULE
) -> nn.Module:
    """Rebuild a freshly initialised model from a recipe made by `architecture`.

    Args:
        arch: the recipe.
        allowed_entrypoints: the modules a factory may come from (default: any).

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
    input_dtype = arch.get("input_dtype", "float32")
    if input_dtype not in INPUT_DTYPES:
        raise ModelLoadFailed(
            f"architecture input_dtype {input_dtype!r} is not one of {list(INPUT_DTYPES)}"
        )
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
        input_dtype=input_dtype,
    )
