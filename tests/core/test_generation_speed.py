"""Tokens/s of `generate`, dense against pruned, on a tiny Llama (the interval logic, not speed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.generation_speed import GenerationRun, compare_generation, prompts
from core.latency import MIN_ROUNDS, latency_verdict
from tests.core.distill_models import halved_mlp, pattern_task, tiny_llama

CPU = torch.device("cpu")


def test_generate_makes_exactly_the_asked_tokens_after_a_fully_attended_prompt():
    data = pattern_task(16)
    batch = prompts(data.x_train, batch_size=3, prompt_length=20, device=CPU)
    assert batch.shape == (3, 2, 20) and bool((batch[:, 1] == 1).all())
    out = GenerationRun(tiny_llama(), new_tokens=5)(batch)
    assert out.shape == (3, 25) and torch.equal(out[:, :20], batch[:, 0])


def test_dense_against_pruned_generation_gets_rounds_an_interval_and_a_verdict():
    dense = tiny_llama(layers=1)
    pruned = halved_mlp(dense)
    # time enough for every round: the rounds, not the clock, end the measuring
    report = compare_generation(
        dense=dense,
        pruned=pruned,
        features=pattern_task(16).x_val,
        device="cpu",
        batch_sizes=[2],
        prompt_length=4,
        new_tokens=2,
        seconds=120.0,
        max_rounds=MIN_ROUNDS,
    )
    assert report["new_tokens"] == 2 and report["prompt_length"] == 4
    for batch in report["batches"]:
        assert batch["rounds"] == MIN_ROUNDS
        for key in ("dense", "pruned", "control"):
            expected = batch["batch_size"] * 2 / batch[key]["median_s"]
            assert batch["tokens_per_s"][key] == pytest.approx(expected)
        low, high = batch["speedup_interval"]
        assert low <= batch["speedup"] <= high
        control_low, control_high = batch["control_interval"]
        assert control_low <= batch["control_ratio"] <= control_high
        verdict = latency_verdict((low, high), (control_low, control_high), speedup_expected=True)
        assert batch["verdict"] == verdict and batch["faster"] == (verdict == "faster")


def test_no_time_to_measure_gives_no_interval_and_claims_nothing():
    dense = tiny_llama()
    report = compare_generation(
        dense=dense,
        pruned=halved_mlp(dense),
        features=pattern_task(16).x_val,
        device="cpu",
        prompt_length=4,
        new_tokens=2,
        seconds=0.0,
    )
    (batch,) = report["batches"]
    assert batch["rounds"] == 0 and batch["speedup_interval"] is None
    assert batch["verdict"] == "inconclusive" and batch["tokens_per_s"]["dense"] is None
    assert batch["speedup"] is None


def test_a_model_without_generate_is_refused():
    with pytest.raises(ValueError, match="not a causal LM"):
        GenerationRun(nn.Linear(2, 2), new_tokens=3)
