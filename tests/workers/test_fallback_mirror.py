"""A job resumed on another worker from its stored checkpoint, while it holds back a model.

The held-back model (the last one within tolerance, while the run builds on a provisional
step) travels inside every checkpoint: the newest one alone, downloaded into an empty
directory, resumes the run to the weights of an uninterrupted one.
"""

from __future__ import annotations

import pytest
import torch

from core.errors import PruneCancelled
from core.loop import prune
from service.storage.local import FileStorage
from tests.core.test_loop import _model, _provisional_past, _provisional_spec, _task
from workers.checkpoints import CheckpointMirror

PREFIX = "tenants/acme/jobs/j/checkpoints/"


def test_the_newest_stored_checkpoint_alone_resumes_a_run_holding_a_model_back(
    monkeypatch, tmp_path
):
    # 0.42 within, 0.58 provisional (0.42 held back), then 0.6 past again: back to 0.42
    _provisional_past(monkeypatch, threshold=0.5)
    spec = _provisional_spec(steps=3)
    reference = prune(_model(), _task(), spec, checkpoint_dir=tmp_path / "reference")
    storage = FileStorage(tmp_path / "store")
    mirror = CheckpointMirror(storage, prefix=PREFIX)
    uploaded = []

    def upload(path):
        mirror.upload(path)
        uploaded.append(path.name)

    with pytest.raises(PruneCancelled):  # stopped after the provisional step's checkpoint
        prune(
            _model(),
            _task(),
            spec,
            checkpoint_dir=tmp_path / "first",
            on_checkpoint=upload,
            should_stop=lambda: len(uploaded) >= 3,
        )
    assert uploaded == ["step-0000", "step-0001", "step-0002"]
    elsewhere = tmp_path / "second"
    assert CheckpointMirror(storage, prefix=PREFIX).download(elsewhere) == 2
    assert sorted(p.name for p in elsewhere.glob("step-*")) == ["step-0002"]
    resumed = prune(_model(), _task(), spec, checkpoint_dir=elsewhere, resume=True)
    assert [r.decision for r in resumed.result.steps] == [
        r.decision for r in reference.result.steps
    ]
    assert "rollback" in [r.decision for r in resumed.result.steps]
    assert resumed.result.sparsity == pytest.approx(reference.result.steps[1].sparsity)
    for key, value in reference.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
