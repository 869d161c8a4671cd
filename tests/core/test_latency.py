from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from core.latency import (
    MIN_ROUNDS,
    bootstrap_interval,
    compare_latency,
    geometric_mean,
    latency_verdict,
    token_rates,
)
from core.measure import MIN_SECONDS_PER_BATCH, latency_plan
from core.spec import ExportSpec, JobSpec


@pytest.mark.parametrize(
    ("interval", "control", "expected"),
    [
        ((1.30, 1.60), (0.98, 1.02), "faster"),
        ((0.50, 0.90), (0.98, 1.02), "slower"),
        ((0.97, 1.03), (0.98, 1.02), "no_difference"),
        # the interval straddles the band's upper edge: neither faster nor the same
        ((1.00, 1.20), (0.98, 1.02), "inconclusive"),
        ((0.90, 1.00), (0.98, 1.02), "inconclusive"),
        # a noisy machine: the model against itself leaves the band, so nothing is claimed
        ((1.30, 1.60), (0.97, 1.08), "inconclusive"),
        ((0.50, 0.90), (0.90, 1.01), "inconclusive"),
        # exactly on the band edges counts as inside
        ((0.95, 1.05), (0.95, 1.05), "no_difference"),
        (None, (0.98, 1.02), "inconclusive"),
        ((1.30, 1.60), None, "inconclusive"),
    ],
)
def test_verdict_on_synthetic_intervals(
    interval: tuple[float, float] | None, control: tuple[float, float] | None, expected: str
) -> None:
    assert latency_verdict(interval, control, speedup_expected=True) == expected


def test_masks_on_dense_kernels_never_claim_a_speedup() -> None:
    assert latency_verdict((3.0, 17.0), (0.99, 1.01), speedup_expected=False) == "not_expected"
    assert latency_verdict(None, None, speedup_expected=False) == "not_expected"


def test_bootstrap_interval_of_synthetic_timings() -> None:
    assert bootstrap_interval([2.0] * 8) == (2.0, 2.0)
    assert bootstrap_interval([1.1] * (MIN_ROUNDS - 1)) is None
    assert bootstrap_interval([1.0, 0.0, 1.0, 1.0]) is None
    rng = np.random.default_rng(0)
    ratios = list(1.5 * np.exp(rng.normal(0.0, 0.05, size=12)))
    low, high = bootstrap_interval(ratios)  # type: ignore[misc]
    centre = geometric_mean(ratios)
    assert centre is not None
    assert low < centre < high
    assert low > 1.3
    assert high < 1.7
    # more spread, wider interval
    wide_low, wide_high = bootstrap_interval(  # type: ignore[misc]
        list(1.5 * np.exp(rng.normal(0.0, 0.3, size=12)))
    )
    assert wide_high - wide_low > high - low


def test_a_model_against_itself_gets_a_control_interval_and_is_never_faster() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    features = np.random.default_rng(0).normal(size=(8, 16)).astype(np.float32)
    threads = torch.get_num_threads()
    # one thread: on a shared machine a descheduled helper thread can stall a pass for tens of
    # milliseconds, and the test needs its rounds within the measuring time
    torch.set_num_threads(1)
    try:
        measured = compare_latency(
            dense=model,
            pruned=copy.deepcopy(model),
            features=features,
            device="cpu",
            batch_sizes=[1, 4],
            seconds=4.0,
            max_rounds=MIN_ROUNDS + 2,
        )
    finally:
        torch.set_num_threads(threads)
    assert [entry["batch_size"] for entry in measured["batches"]] == [1, 4]
    for entry in measured["batches"]:
        assert entry["rounds"] >= MIN_ROUNDS
        control_low, control_high = entry["control_interval"]
        assert control_low <= entry["control_ratio"] <= control_high
        low, high = entry["speedup_interval"]
        assert low <= entry["speedup"] <= high
        assert entry["verdict"] in ("no_difference", "inconclusive", "slower")
        assert entry["faster"] is False
    assert measured["control_band"] == [0.95, 1.05]


def test_compare_latency_stays_within_its_measuring_time() -> None:
    model = nn.Linear(4, 2)
    features = np.zeros((2, 4), dtype=np.float32)
    measured = compare_latency(
        dense=model,
        pruned=model,
        features=features,
        device="cpu",
        batch_sizes=[1],
        seconds=0.0,
    )
    entry = measured["batches"][0]
    assert entry["rounds"] == 0
    assert entry["speedup_interval"] is None
    assert entry["verdict"] == "inconclusive"


def test_latency_plan_measures_less_when_the_budget_is_short() -> None:
    full = latency_plan(batch_sizes=[1, 32, 256], seconds=6.0, time_left_s=100.0)
    assert full["batch_sizes"] == [1, 32, 256]
    assert full["seconds"] == 6.0
    assert full["limited_by_budget"] is False
    assert full["note"] is None
    short = latency_plan(batch_sizes=[256, 1, 32], seconds=6.0, time_left_s=0.6)
    # 0.6 s cannot give three batch sizes their minimum: the largest go first
    assert short["batch_sizes"] == [1, 32]
    assert short["skipped_batch_sizes"] == [256]
    assert short["seconds"] == 0.6
    assert MIN_SECONDS_PER_BATCH <= 0.6 / 2
    assert short["limited_by_budget"] is True
    assert "batch sizes [256] skipped" in short["note"]
    spent = latency_plan(batch_sizes=[1], seconds=6.0, time_left_s=-3.0)
    assert spent["batch_sizes"] == []
    assert spent["seconds"] == 0.0


def test_export_section_defaults_and_bounds() -> None:
    assert ExportSpec().latency_batch_sizes == [1, 32]
    assert ExportSpec().latency_seconds == 10.0
    assert ExportSpec(latency_batch_sizes=[]).latency_batch_sizes == []
    for bad in (
        {"latency_batch_sizes": [0]},
        {"latency_batch_sizes": [1025]},
        {"latency_batch_sizes": [1, 2, 4, 8, 16]},
        {"latency_batch_sizes": [4, 4]},
        {"latency_seconds": -1.0},
        {"latency_seconds": 601.0},
        {"latency_batches": [1]},
    ):
        with pytest.raises(ValidationError):
            ExportSpec.model_validate(bad)


def test_a_bad_export_section_is_refused_naming_the_field() -> None:
    spec = {
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
        "export": {"latency_batch_sizes": [2048]},
    }
    with pytest.raises(ValidationError) as refused:
        JobSpec.model_validate(spec)
    assert refused.value.errors()[0]["loc"] == ("export", "latency_batch_sizes")


def test_token_inputs_get_tokens_per_second_from_the_same_rounds() -> None:
    torch.manual_seed(0)

    class Packed(nn.Module):
        """Reads the (N, 2, L) ids and mask of a Hugging Face task."""

        def __init__(self) -> None:
            super().__init__()
            self.embed, self.head = nn.Embedding(50, 8), nn.Linear(8 * 6, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head((self.embed(x[:, 0]) * x[:, 1, :, None]).flatten(1))

    model = Packed().eval()
    ids = np.random.default_rng(0).integers(0, 50, size=(4, 6)).astype(np.int64)
    tokens = np.stack([ids, np.ones_like(ids)], axis=1)
    measured = compare_latency(
        dense=model,
        pruned=copy.deepcopy(model),
        features=tokens,
        device="cpu",
        batch_sizes=[2],
        seconds=0.5,
        max_rounds=MIN_ROUNDS,
    )
    entry = measured["batches"][0]
    assert entry["sequence_length"] == 6
    for key in ("dense", "pruned"):
        assert entry["tokens_per_s"][key] == pytest.approx(2 * 6 / entry[key]["median_s"])
    # integer (N, L) features may be category codes: no token rate is claimed for them
    assert token_rates(ids, 2, entry) == {}
    # float features (images, tables) are not token ids: no token rate is claimed
    images = compare_latency(
        dense=nn.Linear(4, 2),
        pruned=nn.Linear(4, 2),
        features=np.zeros((2, 4), dtype=np.float32),
        device="cpu",
        batch_sizes=[1],
        seconds=0.1,
    )
    assert "tokens_per_s" not in images["batches"][0]


def test_a_slow_model_gets_fewer_longer_rounds_within_the_measuring_time() -> None:
    import time as clock

    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            clock.sleep(0.02)
            return x

    measured = compare_latency(
        dense=Slow(),
        pruned=Slow(),
        features=np.zeros((2, 4), dtype=np.float32),
        device="cpu",
        batch_sizes=[1],
        seconds=1.2,
    )
    entry = measured["batches"][0]
    # 1.2 s over 3 models x 5 passes of 20 ms affords 4 rounds, not the 40 a fast model gets
    assert entry["rounds"] == MIN_ROUNDS
    assert entry["dense"]["runs"] >= 2 * MIN_ROUNDS  # several timed passes in every round
