"""A checkpoint records the run-state version it was written with; a newer one is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from core.checkpoint import load_latest, save_checkpoint
from core.contract.layout import CHECKPOINT_STATE
from core.contract.version import RUN_STATE_VERSION
from core.errors import CheckpointInvalid


def _saved(tmp_path: Path) -> Path:
    model = nn.Linear(3, 2)
    masks = {"weight": torch.ones(2, 3, dtype=torch.bool)}
    return save_checkpoint(
        tmp_path, step=1, model=model, masks=masks, optimizer=None, state={"k": 1}
    )


def _set_version(path: Path, version: object) -> None:
    state = path / CHECKPOINT_STATE
    meta = json.loads(state.read_text())
    if version is None:
        meta.pop("version")
    else:
        meta["version"] = version
    state.write_text(json.dumps(meta))


def test_state_json_carries_the_run_state_version(tmp_path: Path) -> None:
    path = _saved(tmp_path)
    assert json.loads((path / CHECKPOINT_STATE).read_text())["version"] == RUN_STATE_VERSION
    loaded = load_latest(tmp_path, device=torch.device("cpu"))
    assert loaded is not None and loaded.step == 1 and loaded.state == {"k": 1}


def test_a_checkpoint_from_before_versioning_reads_as_version_one(tmp_path: Path) -> None:
    _set_version(_saved(tmp_path), None)
    loaded = load_latest(tmp_path, device=torch.device("cpu"))
    assert loaded is not None and loaded.state == {"k": 1}


@pytest.mark.parametrize(
    ("version", "words"),
    [(RUN_STATE_VERSION + 1, "newer adaprune"), (0, "not valid"), ("1", "not valid")],
)
def test_a_newer_or_malformed_version_is_refused(tmp_path: Path, version: object, words: str):
    _set_version(_saved(tmp_path), version)
    with pytest.raises(CheckpointInvalid, match=words) as refused:
        load_latest(tmp_path, device=torch.device("cpu"))
    assert refused.value.code == "checkpoint_invalid" and "step-0001" in str(refused.value)
