"""A one-shot run's checkpoint: each finished block's weights plus one JSON progress file.

`oneshot/block-NNNN.safetensors` holds block NNNN's state after pruning; `oneshot/progress.json`
(written after the block file, through a rename) lists the blocks done, the per-block
sparsities, the reports emitted and a fingerprint of the run (method, settings, calibration
tokens). A run resumed with a different fingerprint is refused rather than mixed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from core.checkpoint import unshared
from core.contract.jsonsafe import json_safe
from core.contract.layout import ONESHOT_DIR, ONESHOT_PROGRESS, oneshot_block_name
from core.errors import CheckpointInvalid

PROGRESS_VERSION = 1


@dataclass
class Progress:
    """What a one-shot run has done so far."""

    fingerprint: dict[str, Any]
    sparsities: list[float]
    blocks_done: int = 0
    blocks: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)


def _directory(root: Path) -> Path:
    return Path(root) / ONESHOT_DIR


def load_progress(root: Path, fingerprint: dict[str, Any]) -> Progress | None:
    """The progress saved under `root`, or None when there is none.

    Raises:
        CheckpointInvalid: the file is unreadable, newer than this code, or from another run.
    """
    path = _directory(root) / ONESHOT_PROGRESS
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointInvalid(f"one-shot progress {path} is unreadable: {error}") from error
    if int(data.get("version", 0)) > PROGRESS_VERSION:
        raise CheckpointInvalid(f"one-shot progress {path} is from a newer version")
    if data.get("fingerprint") != fingerprint:
        raise CheckpointInvalid(
            f"one-shot progress {path} belongs to a run with other settings or calibration data"
        )
    return Progress(
        fingerprint=data["fingerprint"],
        sparsities=[float(value) for value in data["sparsities"]],
        blocks_done=int(data["blocks_done"]),
        blocks=list(data["blocks"]),
        steps=list(data["steps"]),
    )


def save_block(root: Path, index: int, block: nn.Module) -> None:
    """Write block `index`'s state (tensors only) as safetensors."""
    directory = _directory(root)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = unshared(block.state_dict())
    temporary = directory / f".{oneshot_block_name(index)}.tmp"
    save_file(tensors, str(temporary))
    os.replace(temporary, directory / oneshot_block_name(index))


def load_block(root: Path, index: int, block: nn.Module) -> None:
    """Load block `index`'s saved state into `block`.

    Raises:
        CheckpointInvalid: the file is missing or does not fit the block.
    """
    path = _directory(root) / oneshot_block_name(index)
    try:
        block.load_state_dict(load_file(str(path)), strict=True)
    except (OSError, RuntimeError) as error:
        raise CheckpointInvalid(f"one-shot block checkpoint {path}: {error}") from error


def save_progress(root: Path, progress: Progress) -> None:
    """Write progress.json atomically (a crash leaves the previous one in force)."""
    directory = _directory(root)
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "version": PROGRESS_VERSION,
        "fingerprint": progress.fingerprint,
        "sparsities": progress.sparsities,
        "blocks_done": progress.blocks_done,
        "blocks": progress.blocks,
        "steps": progress.steps,
    }
    temporary = directory / f".{ONESHOT_PROGRESS}.tmp"
    temporary.write_text(json.dumps(json_safe(data), indent=1, allow_nan=False))
    os.replace(temporary, directory / ONESHOT_PROGRESS)
