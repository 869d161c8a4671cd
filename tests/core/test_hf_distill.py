"""Distillation of pruned Hugging Face students from their dense teachers (core/hf/distill.py)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.errors import CheckpointInvalid, PruneCancelled
from core.finetune import evaluate, to_tensors
from core.hf.distill import DistillSettings, distill
from core.hf.distill_loss import DistillLoss, layer_pairs, soft_kl
from core.metrics import make_metric
from tests.core.distill_models import (
    halved_mlp,
    pattern_task,
    sentiment_task,
    tiny_bert,
    tiny_llama,
    trained,
    without_block,
)

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


def _kl_to_teacher(student, teacher, data) -> float:
    x, _ = to_tensors(data.x_val, data.y_val, device=CPU)
    with torch.no_grad():
        return float(soft_kl(student(x), teacher(x), temperature=1.0, mask=x[:, 1]))


def _metric(model, data, name: str) -> float:
    x, y = to_tensors(data.x_val, data.y_val, device=CPU)
    return evaluate(model, x=x, y=y, metric=make_metric(name)).metric


def _same_weights(a, b) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


@pytest.fixture(scope="module")
def bert_task():
    data = sentiment_task(128)
    return data, trained(tiny_bert(), data, epochs=6, lr=1e-2)


@pytest.fixture(scope="module")
def llama_task():
    data = pattern_task(96)
    return data, trained(tiny_llama(), data, epochs=8, lr=1e-2)


def test_soft_kl_is_hintons_term_over_real_tokens_only():
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    value = soft_kl(student, teacher, temperature=2.0, mask=mask)
    keep = mask.reshape(-1).bool()
    reference = 4.0 * F.kl_div(
        F.log_softmax(student.reshape(-1, 7)[keep] / 2.0, dim=-1),
        F.softmax(teacher.reshape(-1, 7)[keep] / 2.0, dim=-1),
        reduction="batchmean",
    )
    assert torch.allclose(value, reference)
    noisy_student, noisy_teacher = student.clone(), teacher.clone()
    noisy_student[0, 3:] = 50.0 * torch.randn(2, 7)
    noisy_teacher[0, 3:] = -50.0 * torch.randn(2, 7)
    assert torch.allclose(soft_kl(noisy_student, noisy_teacher, temperature=2.0, mask=mask), value)
    assert float(soft_kl(student, student, temperature=2.0, mask=mask)) == pytest.approx(0.0)


def test_causal_lm_loss_of_a_padded_row_equals_the_unpadded_row():
    teacher, student = tiny_llama(seed=0), tiny_llama(seed=1)
    loss = DistillLoss(
        temperature=2.0,
        alpha=0.5,
        hidden_weight=1.0,
        layers=layer_pairs(student, teacher, hidden_weight=1.0),
    )
    row = torch.tensor([5, 6, 7, 8])
    short = torch.stack([row, torch.ones(4, dtype=torch.long)])[None]
    padded = torch.zeros(1, 2, 9, dtype=torch.long)
    padded[0, 0, :4], padded[0, 1, :4] = row, 1
    padded[0, 0, 4:] = torch.tensor([9, 3, 17, 22, 11])  # tokens under a zero mask
    targets_short = torch.tensor([[6, 7, 8, -100]])
    targets_padded = torch.full((1, 9), -100)
    targets_padded[0, :3] = torch.tensor([6, 7, 8])
    a = loss(student, teacher, short, targets_short)
    b = loss(student, teacher, padded, targets_padded)
    for part in ("total", "task", "kl", "hidden"):
        assert torch.allclose(getattr(a, part), getattr(b, part), atol=1e-5), part
    assert float(a.kl) > 0 and float(a.hidden) > 0


def test_hidden_pairs_follow_the_kept_blocks_and_skip_another_hidden_size():
    teacher = tiny_llama(layers=3)
    assert layer_pairs(teacher, teacher, hidden_weight=1.0).pairs == ((0, 0), (1, 1), (2, 2))
    shallow = without_block(teacher, 1)
    assert layer_pairs(shallow, teacher, hidden_weight=1.0, layer_map=[0, 2]).pairs == (
        (0, 0),
        (1, 2),
    )
    with pytest.raises(ValueError, match="needs layer_map"):
        layer_pairs(shallow, teacher, hidden_weight=1.0)
    with pytest.raises(ValueError, match="not a teacher block"):
        layer_pairs(shallow, teacher, hidden_weight=1.0, layer_map=[0, 3])
    assert layer_pairs(shallow, teacher, hidden_weight=0.0).pairs == ()
    narrow = copy.deepcopy(teacher)
    narrow.hf.config.hidden_size = 16
    skipped = layer_pairs(narrow, teacher, hidden_weight=1.0)
    assert skipped.pairs == () and "hidden size 16 differs" in str(skipped.skipped)


def test_distillation_lowers_kl_and_recovers_accuracy_of_a_depth_pruned_bert(bert_task):
    data, teacher = bert_task
    student = without_block(teacher, 1)
    kl_before = _kl_to_teacher(student, teacher, data)
    accuracy_before = _metric(student, data, "accuracy")
    settings = DistillSettings(epochs=3, lr=3e-3, batch_size=16, hidden_weight=1.0)
    result = distill(student, teacher, data, settings=settings, layer_map=[0])
    assert result.epochs == 3 and result.stop_reason == "epochs_done"
    assert all(epoch.hidden > 0 and epoch.kl > 0 for epoch in result.history)
    assert result.tokens == 3 * int(data.x_train[:, 1].sum()) and result.tokens_per_s > 0
    assert _kl_to_teacher(student, teacher, data) < 0.5 * kl_before
    accuracy = _metric(student, data, "accuracy")
    assert accuracy > accuracy_before
    assert accuracy >= _metric(teacher, data, "accuracy") - 0.05


def test_distillation_lowers_kl_and_perplexity_of_a_width_pruned_llama(llama_task):
    data, teacher = llama_task
    student = halved_mlp(teacher)
    kl_before = _kl_to_teacher(student, teacher, data)
    perplexity_before = _metric(student, data, "perplexity")
    settings = DistillSettings(epochs=3, lr=3e-3, batch_size=16, hidden_weight=1.0)
    result = distill(student, teacher, data, settings=settings)
    assert result.hidden_skipped is None and all(h.hidden > 0 for h in result.history)
    assert _kl_to_teacher(student, teacher, data) < 0.2 * kl_before
    assert _metric(student, data, "perplexity") < perplexity_before


def test_teacher_comes_back_untrained_and_as_it_was(llama_task):
    data, teacher = llama_task
    teacher.train()
    before = copy.deepcopy(teacher)
    settings = DistillSettings(epochs=1, lr=3e-3, batch_size=32)
    distill(halved_mlp(teacher), teacher, data, settings=settings)
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert _same_weights(teacher, before)
    teacher.eval()


# A distillation in its own process that SIGKILLs itself in the middle of epoch 2.
KILLED = r"""
import os, signal, sys
from pathlib import Path
from tests.core.test_hf_distill import kill_case
from core.hf.distill import distill
student, teacher, data, settings = kill_case()
polls = []
def stop():
    polls.append(1)
    if len(polls) == 5:  # 3 batches an epoch: the second batch of epoch 2
        os.kill(os.getpid(), signal.SIGKILL)
    return False
distill(
    student, teacher, data, settings=settings, should_stop=stop, checkpoint_dir=Path(sys.argv[1])
)
"""


def kill_case():
    teacher = tiny_llama(seed=0)
    student = halved_mlp(tiny_llama(seed=0))
    settings = DistillSettings(
        epochs=3, lr=3e-3, batch_size=16, hidden_weight=0.5, check_every=1, seed=3
    )
    return student, teacher, pattern_task(64), settings


def test_resume_after_a_kill_mid_distillation_gives_the_uninterrupted_weights(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path / "ck")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == -9, done.stderr[-2000:]
    assert (
        json.loads((tmp_path / "ck" / "step-0001" / "state.json").read_text())["state"][
            "epochs_done"
        ]
        == 1
    )
    student, teacher, data, settings = kill_case()
    resumed = distill(
        student, teacher, data, settings=settings, checkpoint_dir=tmp_path / "ck", resume=True
    )
    reference_student, teacher, data, settings = kill_case()
    reference = distill(reference_student, teacher, data, settings=settings)
    assert resumed.resumed_at == 1 and resumed.epochs == 3
    assert _same_weights(student, reference_student)
    assert [h.loss for h in resumed.history] == [h.loss for h in reference.history]


def test_cancel_stops_within_one_check_interval(tmp_path):
    student, teacher, data, _ = kill_case()
    settings = DistillSettings(epochs=4, lr=3e-3, batch_size=8, check_every=2)
    forwards, polls = [], []
    student.register_forward_hook(lambda *_: forwards.append(1))

    def stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    with pytest.raises(PruneCancelled):
        distill(student, teacher, data, settings=settings, should_stop=stop)
    # polled before batches 0, 2 and 4 of the first epoch: four batches ran
    assert len(polls) == 3 and len(forwards) == 4


def test_spent_time_ends_the_run_as_max_runtime_and_a_resume_keeps_it(tmp_path):
    student, teacher, data, _ = kill_case()
    settings = DistillSettings(epochs=3, lr=3e-3, batch_size=8, check_every=2)
    result = distill(
        student, teacher, data, settings=settings, checkpoint_dir=tmp_path, time_left_s=0.0
    )
    assert result.stop_reason == "max_runtime" and result.epochs == 1
    assert result.history[0].batches == 2 and not result.history[0].complete
    again = distill(student, teacher, data, settings=settings, checkpoint_dir=tmp_path, resume=True)
    assert again.resumed_at == 1 and again.stop_reason == "max_runtime" and again.epochs == 1


def test_a_checkpoint_of_other_settings_is_refused(tmp_path):
    student, teacher, data, _ = kill_case()
    settings = DistillSettings(epochs=1, lr=3e-3, batch_size=16)
    distill(student, teacher, data, settings=settings, checkpoint_dir=tmp_path)
    other = DistillSettings(epochs=1, lr=1e-3, batch_size=16)
    with pytest.raises(CheckpointInvalid, match="with these settings"):
        distill(student, teacher, data, settings=other, checkpoint_dir=tmp_path, resume=True)


def test_a_tied_language_model_checkpoints_and_resumes(tmp_path):
    teacher = tiny_llama(tied=True)
    student = halved_mlp(teacher)
    data = pattern_task(32)
    settings = DistillSettings(epochs=1, lr=3e-3, batch_size=16)
    distill(student, teacher, data, settings=settings, checkpoint_dir=tmp_path)
    fresh = halved_mlp(teacher)
    distill(fresh, teacher, data, settings=settings, checkpoint_dir=tmp_path, resume=True)
    assert _same_weights(fresh, student)
    assert fresh.hf.lm_head.weight.data_ptr() == fresh.hf.model.embed_tokens.weight.data_ptr()


def test_settings_come_from_the_job_spec():
    from core.spec import JobSpec

    spec = JobSpec.model_validate(
        {
            "model": {"hf": "file:///models/tiny"},
            "task": {"kind": "causal-lm", "data": "file:///d/all.jsonl", "val_fraction": 0.2},
            "prune": {"target_sparsity": 0.3},
            "finetune": {
                "final_epochs": 9,
                "distill": True,
                "distill_temperature": 3.0,
                "distill_weight": 0.7,
                "distill_hidden_weight": 2.0,
            },
            "budget": {"max_epochs": 4},
            "seed": 5,
        }
    )
    settings = DistillSettings.from_spec(spec)
    assert (settings.epochs, settings.temperature, settings.alpha, settings.hidden_weight) == (
        4,
        3.0,
        0.7,
        2.0,
    )
    assert (settings.lr, settings.seed, settings.batch_size) == (1e-4, 5, 128)
