"""bench/shrink.py: each target's verdict follows the manifest figures it is given."""

from __future__ import annotations

from typing import Any

from bench.shrink import _latency, _lm_targets, _minilm_part, _recovered_part


def manifest(
    *,
    params: tuple[int, int] = (1000, 700),
    test: tuple[float, float] = (10.0, 15.0),
    speedup: float | None = 1.3,
    interval: list[float] | None = None,
    verdict: str = "faster",
) -> dict[str, Any]:
    batches = []
    if speedup is not None:
        batches.append(
            {
                "batch_size": 8,
                "speedup": speedup,
                "speedup_interval": interval or [speedup - 0.1, speedup + 0.1],
                "verdict": verdict,
                "dense": {"median_s": 0.02},
                "pruned": {"median_s": 0.02 / speedup},
            }
        )
    return {
        "sparsity": {"params_dense": params[0], "params_pruned": params[1]},
        "metrics": {"dense": {"test": test[0]}, "pruned": {"test": test[1]}},
        "latency": {"batches": batches},
        "bench": {"epochs": 2, "distill": True, "wall_s": 60.0},
    }


def verdicts(lines: list[str]) -> list[bool]:
    return ["**not " not in line for line in lines]


def test_a_smaller_faster_model_within_twice_the_perplexity_meets_every_lm_target() -> None:
    assert verdicts(_lm_targets({"width-30-distill": manifest()})) == [True, True, True]


def test_each_lm_target_fails_on_its_own_figure() -> None:
    assert verdicts(_lm_targets({"width-30-distill": manifest(params=(1000, 760))})) == [
        False,
        True,
        True,
    ]
    assert verdicts(_lm_targets({"width-30-distill": manifest(test=(10.0, 20.5))})) == [
        True,
        False,
        True,
    ]
    slow = manifest(speedup=1.10)
    assert verdicts(_lm_targets({"width-30-distill": slow})) == [True, True, False]


def test_a_fast_median_with_an_interval_reaching_one_is_not_met() -> None:
    wide = manifest(speedup=1.2, interval=[0.98, 1.4])
    assert verdicts(_lm_targets({"width-30-distill": wide})) == [True, True, False]
    assert _latency(wide)[2] == (0.98, 1.4)


def test_a_passing_ratio_on_a_machine_too_noisy_for_its_control_is_not_confirmed() -> None:
    noisy = manifest(speedup=1.3, interval=[1.16, 1.44], verdict="inconclusive")
    lines = _lm_targets({"width-30-distill": noisy})
    assert verdicts(lines) == [True, True, False]
    assert "not confirmed" in lines[2] and "inconclusive" in lines[2]


def test_no_latency_measured_is_reported_not_judged() -> None:
    lines = _lm_targets({"width-30-distill": manifest(speedup=None)})
    assert "not measured" in lines[2] and "n/a" in lines[2]


def test_minilm_allows_five_points_below_dense_and_at_most_0_8x_parameters() -> None:
    within = manifest(params=(1000, 790), test=(0.90, 0.86))
    assert verdicts([line for line in _minilm_part(within) if line.startswith("- ")]) == [
        True,
        True,
    ]
    below = manifest(params=(1000, 810), test=(0.90, 0.84))
    assert verdicts([line for line in _minilm_part(below) if line.startswith("- ")]) == [
        False,
        False,
    ]


def test_wanda_24_with_recovery_allows_six_points_and_shows_the_cut_before_recovery() -> None:
    def recovered(pruned: float) -> dict[str, Any]:
        figures = manifest(test=(0.90, pruned))
        figures["metrics"]["dense"]["val"] = 0.95
        figures["metrics"]["pruned"]["val"] = 0.94
        figures["sparsity"]["overall"] = 0.5
        figures["bench"]["cut_metric"] = 0.80
        figures["bench"]["epochs"] = 2
        figures["spec"] = {
            "prune": {"calibration_samples": 64},
            "finetune": {"lr": 1e-4, "batch_size": 16},
        }
        return figures

    met = _recovered_part(recovered(0.845))
    assert verdicts([line for line in met if line.startswith("- ")]) == [True]
    assert "| 95.0 % → 80.0 % → 94.0 % |" in "\n".join(met)
    assert "(64 calibration articles)" in met[0] and "2 epochs of masked" in met[0]
    missed = _recovered_part(recovered(0.835))
    assert verdicts([line for line in missed if line.startswith("- ")]) == [False]
    assert _recovered_part(None) == ["MiniLM Wanda 2:4 with recovery: not run in this section."]
