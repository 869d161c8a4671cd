"""Per-step checkpoints: tensors in safetensors, everything else in JSON; never a pickle.

A checkpoint is a directory `step-NNNN/` holding `model.safetensors`, `masks.safetensors`,
`optimizer.safetensors` and `state.json` (file names in `core.contract.layout`), and, while the
run holds back a model within tolerance, that model's weights and masks
(`fallback-model.safetensors`, `fallback-masks.safetensors`): every checkpoint is whole on its
own, so a copy of the newest one resumes the run. `LATEST` names
the newest complete one; it is written last, through a rename, so a crash mid-write leaves the
previous checkpoint in force. state.json carries the run-state `version` it was written with;
a reader refuses a newer one rather than misread it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from core.contract.layout import (
    CHECKPOINT_FALLBACK_MASKS,
    CHECKPOINT_FALLBACK_MODEL,
    CHECKPOINT_LATEST,
    CHECKPOINT_MASKS,
    CHECKPOINT_MODEL,
    CHECKPOINT_OPTIMIZER,
    CHECKPOINT_STATE,
    CHECKPOINTS_KEPT,
    checkpoint_dir_name,
)
from core.contract.version import RUN_STATE_VERSION
from core.errors import CheckpointInvalid

LATEST = CHECKPOINT_LATEST


@dataclass
class Checkpoint:
    step: int
    path: Path
    model_state: dict[str, Tensor]
    masks: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None
    state: dict[str, Any]
    # the held-back model within tolerance (None: none held)
    fallback_state: dict[str, Tensor] | None = None
    fallback_masks: dict[str, Tensor] | None = None


def _flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain JSON values."""
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entry in state_dict["state"].items():
        plain[str(index)] = {}
        for key, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{index}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain[str(index)][key] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["plain"].items()}
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def unshared(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """`state` on the CPU with no two tensors sharing memory, as safetensors needs.

    Tied weights (a language-model head sharing the embedding) are one tensor under two
    names; the second name gets a copy, and loading both names fills the one parameter.
    """
    seen: set[int] = set()
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        value = tensor.detach().contiguous().cpu()
        pointer = value.untyped_storage().data_ptr()
        if pointer in seen:
            value = value.clone()
        seen.add(pointer)
        out[name] = value
    return out


def _save_masks(masks: dict[str, Tensor], path: Path) -> None:
    """Masks as uint8 (safetensors has no bool), on the CPU."""
    save_file({k: v.to(torch.uint8).contiguous().cpu() for k, v in masks.items()}, str(path))


def _load_masks(path: Path, *, device: str) -> dict[str, Tensor]:
    return {k: v.to(torch.bool) for k, v in load_file(str(path), device=device).items()}


def save_checkpoint(
    directory: Path,
    *,
    step: int,
    model: nn.Module,
    masks: dict[str, Tensor],
    optimizer: torch.optim.Optimizer | None,
    state: dict[str, Any],
    fallback: tuple[nn.Module, dict[str, Tensor]] | None = None,
) -> Path:
    """Write checkpoint `step` under `directory` atomically and return its path.

    `fallback` is the model (and its masks) the run holds back, written beside the current one.
    Older checkpoints beyond the newest two are removed. state.json records
    RUN_STATE_VERSION beside `state`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / checkpoint_dir_name(step)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    try:
        save_file(unshared(model.state_dict()), str(staging / CHECKPOINT_MODEL))
        _save_masks(masks, staging / CHECKPOINT_MASKS)
        if fallback is not None:
            held, held_masks = fallback
            save_file(unshared(held.state_dict()), str(staging / CHECKPOINT_FALLBACK_MODEL))
            _save_masks(held_masks, staging / CHECKPOINT_FALLBACK_MASKS)
        meta: dict[str, Any] = {
            "version": RUN_STATE_VERSION,
            "step": step,
            "state": state,
            "optimizer": None,
        }
        if optimizer is not None:
            tensors, optimizer_meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, str(staging / CHECKPOINT_OPTIMIZER))
            meta["optimizer"] = optimizer_meta
        (staging / CHECKPOINT_STATE).write_text(json.dumps(meta, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pointer = directory / f".{LATEST}.tmp"
    pointer.write_text(final.name)
    os.replace(pointer, directory / LATEST)
    for old in sorted(directory.glob("step-*"))[:-CHECKPOINTS_KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_state(path: Path) -> dict[str, Any]:
    """The state.json of checkpoint directory `path`, checked for its run-state version.

    A checkpoint without a version predates versioning and reads as version 1.

    Raises:
        CheckpointInvalid: the checkpoint was written with a newer run-state version than
            this code reads (RUN_STATE_VERSION), or its version is not a positive integer.
    """
    meta: dict[str, Any] = json.loads((path / CHECKPOINT_STATE).read_text())
    version = meta.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointInvalid(f"checkpoint {path.name}: version {version!r} is not valid")
    if version > RUN_STATE_VERSION:
        raise CheckpointInvalid(
            f"checkpoint {path.name} has run-state version {version}; this code reads version "
            f"{RUN_STATE_VERSION} or older (resume it with a newer adaprune)"
        )
    return meta


def load_latest(directory: Path, *, device: torch.device) -> Checkpoint | None:
    """Load the newest complete checkpoint under `directory`, or None if there is none.

    Raises:
        CheckpointInvalid: the checkpoint's run-state version is newer than RUN_STATE_VERSION.
    """
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    path = directory / pointer.read_text().strip()
    meta = read_state(path)
    model_state = load_file(str(path / CHECKPOINT_MODEL), device=str(device))
    masks = _load_masks(path / CHECKPOINT_MASKS, device=str(device))
    optimizer_state = None
    if meta["optimizer"] is not None:
        tensors = load_file(str(path / CHECKPOINT_OPTIMIZER), device=str(device))
        optimizer_state = _unflatten_optimizer(tensors, meta["optimizer"])
    fallback_state = fallback_masks = None
    if (path / CHECKPOINT_FALLBACK_MODEL).is_file():
        fallback_state = load_file(str(path / CHECKPOINT_FALLBACK_MODEL), device="cpu")
        fallback_masks = _load_masks(path / CHECKPOINT_FALLBACK_MASKS, device="cpu")
    return Checkpoint(
        step=int(meta["step"]),
        path=path,
        model_state=model_state,
        masks=masks,
        optimizer_state=optimizer_state,
        state=meta["state"],
        fallback_state=fallback_state,
        fallback_masks=fallback_masks,
    )
