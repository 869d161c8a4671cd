"""File names of artifacts and checkpoints, and the checksum every reader verifies."""

from __future__ import annotations

import hashlib
from pathlib import Path

ARTIFACT_FORMAT = "adaprune/1"
WEIGHTS = "weights.safetensors"
MANIFEST = "manifest.json"
STEPS_CSV = "steps.csv"
CURVE_PNG = "curve.png"
# a Hugging Face model's artifact holds a save_pretrained directory instead of WEIGHTS
HF_MODEL_DIR = "model"

# a checkpoint directory step-NNNN/ holds these; LATEST names the newest complete one
CHECKPOINT_LATEST = "LATEST"
CHECKPOINT_DENSE = "dense.safetensors"
CHECKPOINT_MODEL = "model.safetensors"
CHECKPOINT_MASKS = "masks.safetensors"
CHECKPOINT_OPTIMIZER = "optimizer.safetensors"
CHECKPOINT_STATE = "state.json"
# while a run builds on provisional steps: the last model within tolerance, which it may return
CHECKPOINT_FALLBACK_MODEL = "fallback-model.safetensors"
CHECKPOINT_FALLBACK_MASKS = "fallback-masks.safetensors"
CHECKPOINTS_KEPT = 2

# a one-shot run's checkpoint: oneshot/ holds block-NNNN.safetensors per finished block and
# progress.json (blocks done, per-block sparsities, reports), written after the block file
ONESHOT_DIR = "oneshot"
ONESHOT_PROGRESS = "progress.json"


def checkpoint_dir_name(step: int) -> str:
    """The directory name of step `step`'s checkpoint: step-NNNN."""
    return f"step-{step:04d}"


def oneshot_block_name(index: int) -> str:
    """The file name of one-shot block `index`'s pruned weights: block-NNNN.safetensors."""
    return f"block-{index:04d}.safetensors"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
