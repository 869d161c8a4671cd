"""The iterative loop's distillation for Hugging Face models goes through the HF loss (only it
has the hidden-state term), with a text classifier and a tied causal LM (checkpointed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.loop import prune
from core.spec import JobSpec
from tests.core.distill_models import pattern_task, sentiment_task, tiny_bert, tiny_llama

CASES = {
    "text-classification": (lambda: tiny_bert(seed=2), lambda: sentiment_task(64, seed=1)),
    "causal-lm": (lambda: tiny_llama(seed=2, tied=True), lambda: pattern_task(64, seed=1)),
}


def _spec(kind: str, hidden_weight: float) -> JobSpec:
    task = {"kind": kind, "data": "file:///d/all.jsonl", "val_fraction": 0.25}
    return JobSpec.model_validate(
        {
            "model": {"hf": "file:///models/tiny"},
            "task": task,
            "prune": {
                "target_sparsity": 0.3,
                "criterion": "magnitude",
                "schedule": {"kind": "linear", "steps": 1},
                "max_metric_drop": 1.0,
            },
            "finetune": {
                "epochs_per_step": 1,
                "final_epochs": 1,
                "lr": 3e-3,
                "batch_size": 16,
                "distill": True,
                "distill_hidden_weight": hidden_weight,
            },
            "seed": 1,
        }
    )


def _weights(outcome) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in outcome.model.state_dict().items()}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_loop_distils_hf_models_through_the_hf_loss_with_hidden_states(kind, tmp_path):
    build, task = CASES[kind]
    data = task()
    plain = prune(build(), data, _spec(kind, 0.0), checkpoint_dir=tmp_path / "plain")
    hidden = prune(build(), data, _spec(kind, 1.0), checkpoint_dir=tmp_path / "hidden")
    assert np.isfinite(plain.result.metric) and np.isfinite(hidden.result.metric)
    with_hidden, without = _weights(hidden), _weights(plain)
    assert any(not torch.equal(with_hidden[k], without[k]) for k in with_hidden)
