"""Measured inference latency: one model on its own, and a dense model against its pruned copy.

A comparison is only as good as the machine is quiet, so every comparison carries its own
control: the dense model timed against a second copy of itself in the same interleaved rounds.
Ratios are dense time / other time per round; their geometric mean is the reported ratio, with a
percentile bootstrap interval over rounds (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap", ch. 13). The verdict (`latency_verdict`) trusts the pruned model's interval only when
the control's interval lies inside CONTROL_BAND.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn


def _synchronize(device: torch.device) -> None:
    # CUDA kernels run asynchronously; without a sync the clock would stop before they finish.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency(
    model: nn.Module,
    *,
    example_inputs: Tensor,
    warmup: int = 5,
    repeats: int = 30,
    max_seconds: float = 5.0,
) -> dict[str, float]:
    """Time forward passes of `model` on `example_inputs`, in eval mode under inference_mode.

    Runs `warmup` untimed passes, then up to `repeats` timed ones, stopping early once the timed
    passes have taken `max_seconds` (at least one timed pass always runs). The model's
    training flag is restored afterwards.

    Args:
        model: the model, already on the device of `example_inputs`.
        example_inputs: one batch.
        warmup: untimed passes first (caches, lazy initialisation, kernel selection).
        repeats: most timed passes.
        max_seconds: time budget for the timed passes.

    Returns:
        {"median_s", "p90_s", "runs"}: median and 90th percentile (linear interpolation)
        seconds per forward pass, and the number of timed passes.

    Raises:
        ValueError: a count or budget out of range, or inputs that are not a tensor.
    """
    if not isinstance(example_inputs, Tensor):
        raise ValueError(f"example_inputs must be a tensor, got {type(example_inputs).__name__}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} must be a non-negative integer")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a positive integer")
    if not max_seconds > 0:
        raise ValueError(f"max_seconds={max_seconds!r} must be positive")
    device = example_inputs.device
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(example_inputs)
            _synchronize(device)
            budget_end = time.perf_counter() + max_seconds
            while len(times) < repeats:
                start = time.perf_counter()
                model(example_inputs)
                _synchronize(device)
                end = time.perf_counter()
                times.append(end - start)
                if end >= budget_end:
                    break
    finally:
        model.train(was_training)
    samples = np.asarray(times, dtype=np.float64)
    return {
        "median_s": float(np.median(samples)),
        "p90_s": float(np.percentile(samples, 90)),
        "runs": len(times),
    }


Verdict = Literal["faster", "slower", "no_difference", "inconclusive", "not_expected"]

CONFIDENCE = 0.95
# a same-model ratio outside this band means the machine's noise is larger than 5 %
CONTROL_BAND = (0.95, 1.05)
# the measuring time, not this cap, should end a comparison: the interval narrows as the
# square root of the rounds, and twelve rounds left a same-model control at +-5 % even on an
# idle machine (30 ms forward passes, 2 threads); forty bring it to about +-2.5 %
MAX_ROUNDS = 40
MIN_ROUNDS = 4  # fewer rounds give no interval: four resampled points say little already
_REPEATS_PER_ROUND = 10
_PASSES_PER_ROUND = 5  # what a round should hold of each model: 4 timed + 1 to refill caches
_RESAMPLES = 2000
_MODELS = ("dense", "pruned", "control")


def bootstrap_interval(
    ratios: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = _RESAMPLES,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the geometric mean of per-round ratios.

    The rounds are resampled with replacement `resamples` times; each resample's statistic is
    exp(mean(log r_i)); the interval is the (1 - c)/2 and (1 + c)/2 quantiles of those.

    Returns:
        (low, high), or None for fewer than MIN_ROUNDS ratios or a non-positive ratio.
    """
    values = np.asarray(ratios, dtype=np.float64)
    if len(values) < MIN_ROUNDS or not (values > 0).all() or not np.isfinite(values).all():
        return None
    logs = np.log(values)
    rows = np.random.default_rng(seed).integers(0, len(logs), size=(resamples, len(logs)))
    means = logs[rows].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(math.exp(low)), float(math.exp(high))


def geometric_mean(ratios: Sequence[float]) -> float | None:
    """exp(mean(log r)); None when there is no ratio or one is not positive."""
    values = np.asarray(ratios, dtype=np.float64)
    if len(values) == 0 or not (values > 0).all():
        return None
    return float(np.exp(np.log(values).mean()))


def latency_verdict(
    interval: tuple[float, float] | None,
    control: tuple[float, float] | None,
    *,
    speedup_expected: bool,
    band: tuple[float, float] = CONTROL_BAND,
) -> Verdict:
    """What a measured dense/pruned time ratio may claim.

    - not_expected: the pruned model runs the same dense kernels (masks, N:M without a sparse
      kernel); no speed claim is made whatever was measured.
    - inconclusive: no interval (too few rounds), the control's interval leaves `band` (the
      machine is too noisy to tell), or the ratio's interval straddles an edge of `band`.
    - faster: the whole interval is above band[1]; slower: the whole interval is below band[0].
    - no_difference: the whole interval lies inside `band`.
    """
    if not speedup_expected:
        return "not_expected"
    if interval is None or control is None:
        return "inconclusive"
    low, high = band
    if control[0] < low or control[1] > high:
        return "inconclusive"
    if interval[0] > high:
        return "faster"
    if interval[1] < low:
        return "slower"
    if interval[0] >= low and interval[1] <= high:
        return "no_difference"
    return "inconclusive"


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _pooled(rounds: Sequence[dict[str, float]]) -> dict[str, float] | None:
    """Median over the rounds' medians and p90s; runs summed (None without a round)."""
    if not rounds:
        return None
    return {
        "median_s": float(np.median([r["median_s"] for r in rounds])),
        "p90_s": float(np.median([r["p90_s"] for r in rounds])),
        "runs": int(sum(r["runs"] for r in rounds)),
    }


def batch_of(features: np.ndarray, *, batch_size: int, device: torch.device) -> Tensor:
    """The first `batch_size` rows of `features` (cycled when there are fewer) as a tensor."""
    if len(features) == 0:
        raise ValueError("cannot build a latency batch from an empty split")
    rows = np.arange(batch_size) % len(features)
    return torch.from_numpy(np.ascontiguousarray(features[rows])).to(device)


def interleaved_rounds(
    models: dict[str, nn.Module], *, inputs: Tensor, seconds: float, max_rounds: int
) -> dict[str, list[dict[str, float]]]:
    """Time the models in interleaved rounds until `max_rounds` or `seconds` are spent.

    The order rotates every round so that no model is always timed first (cold caches) or
    last; each model gets an equal share of the time left per round, and one untimed pass
    before its timed ones when that pass is cheap against the share. A round that starts in
    time is finished, so the measuring can run over `seconds` by at most one round.
    """
    timed: dict[str, list[dict[str, float]]] = {key: [] for key in models}
    start = time.perf_counter()
    deadline = start + seconds
    cost: dict[str, float] = {}
    for key, model in models.items():  # untimed: lazy initialisation, allocator, caches
        first = measure_latency(model, example_inputs=inputs, warmup=2, repeats=1, max_seconds=1e-6)
        cost[key] = first["median_s"]
    keys = list(models)
    # more rounds narrow the interval, but each must still hold a few passes of every model
    # (and the pass that refills the caches): a slow model gets fewer, longer rounds
    slowest = max(cost.values(), default=0.0)
    if slowest > 0:
        affordable = int(seconds / (len(keys) * _PASSES_PER_ROUND * slowest))
        max_rounds = min(max_rounds, max(MIN_ROUNDS, affordable))
    for index in range(max_rounds):
        left = deadline - time.perf_counter()
        if left <= 0:
            break
        share = left / (len(keys) * (max_rounds - index))
        shift = index % len(keys)
        for key in keys[shift:] + keys[:shift]:
            timed[key].append(
                measure_latency(
                    models[key],
                    example_inputs=inputs,
                    # after another model ran, one pass refills the caches, if it is cheap
                    warmup=1 if 4 * cost[key] <= share else 0,
                    repeats=_REPEATS_PER_ROUND,
                    max_seconds=max(share, 1e-6),
                )
            )
    return timed


def _interval(values: tuple[float, float] | None) -> list[float] | None:
    return None if values is None else [values[0], values[1]]


def compare_latency(
    *,
    dense: nn.Module,
    pruned: nn.Module,
    features: np.ndarray,
    device: str,
    batch_sizes: Sequence[int],
    seconds: float = 10.0,
    speedup_expected: bool = True,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, Any]:
    """Measure dense, pruned and a same-model control at each batch size on `device`.

    Both models must already be on `device`. Per batch size the three models (dense, pruned
    and a deep copy of dense, the control) are timed in up to `max_rounds` interleaved rounds
    within an equal share of `seconds`. "speedup" is the geometric mean over rounds of dense /
    pruned median time, "speedup_interval" its bootstrap interval, "control_ratio" and
    "control_interval" the same for dense / control; "verdict" comes from `latency_verdict`
    and "faster" is True only for the verdict "faster".

    Args:
        dense: the dense model.
        pruned: the pruned model.
        features: examples to draw batches from (N, *input_shape).
        device: where the models run ("cpu", "cuda", "cuda:1", ...).
        batch_sizes: batch sizes to time.
        seconds: the most time spent timing, all batch sizes together (each model's first
            warm-up passes and the last round started in time may run over it).
        speedup_expected: False when the pruned model runs the same dense kernels.
        max_rounds: most interleaved rounds per batch size.

    Returns:
        {"device", "device_name", "torch_threads", "confidence", "control_band",
        "load_average": {"before", "after"}, "speedup_expected", "seconds", "batches": [...]},
        each batch {"batch_size", "rounds", "dense", "pruned", "control", "speedup",
        "speedup_interval", "control_ratio", "control_interval", "verdict", "faster"}, where
        "dense"/"pruned"/"control" pool `measure_latency` results over the rounds; for
        token-id features also "sequence_length" and "tokens_per_s" (`token_rates`).
    """
    if not seconds >= 0:
        raise ValueError(f"seconds={seconds!r} must be non-negative")
    target = torch.device(device)
    control = copy.deepcopy(dense)
    before = load_average()
    batches: list[dict[str, Any]] = []
    for size in batch_sizes:
        inputs = batch_of(features, batch_size=size, device=target)
        timed = interleaved_rounds(
            {"dense": dense, "pruned": pruned, "control": control},
            inputs=inputs,
            seconds=seconds / max(len(batch_sizes), 1),
            max_rounds=max_rounds,
        )
        summary = round_summary(timed, seed=size, speedup_expected=speedup_expected)
        batches.append({"batch_size": size, **summary, **token_rates(features, size, summary)})
    return {
        **machine(target),
        "load_average": {"before": before, "after": load_average()},
        "speedup_expected": speedup_expected,
        "seconds": seconds,
        "batches": batches,
    }


def token_rates(features: np.ndarray, batch_size: int, summary: dict[str, Any]) -> dict[str, Any]:
    """For a text task's features (the (N, 2, L) token ids and attention mask of a Hugging Face
    task, `core.hf.adapter.pack`): {"sequence_length": L, "tokens_per_s": {"dense", "pruned"}},
    batch_size x L positions (padding included: the forward runs them all) over each model's
    pooled median forward time; {} for any other input (an integer (N, L) array may as well be
    category codes, and claims nothing). The rates come from the same rounds as the speedup and
    its verdict, so they claim no more than it does."""
    packed = features.ndim == 3 and features.shape[1] == 2
    if not packed or not np.issubdtype(features.dtype, np.integer):
        return {}
    length = int(features.shape[-1])
    rates = {
        key: batch_size * length / summary[key]["median_s"]
        for key in ("dense", "pruned")
        if summary.get(key) and summary[key]["median_s"] > 0
    }
    return {"sequence_length": length, "tokens_per_s": rates}


def round_summary(
    timed: dict[str, list[dict[str, float]]], *, seed: int, speedup_expected: bool
) -> dict[str, Any]:
    """Ratios of `interleaved_rounds` timings of "dense", "pruned" and "control".

    Returns:
        {"rounds", "dense", "pruned", "control" (pooled timings), "speedup" (geometric mean
        of dense / pruned median time per round), "speedup_interval", "control_ratio",
        "control_interval" (the same for dense / control), "verdict", "faster"}.
    """
    medians = {key: [r["median_s"] for r in timed[key]] for key in _MODELS}
    ratios = [d / p for d, p in zip(medians["dense"], medians["pruned"], strict=True)]
    controls = [d / c for d, c in zip(medians["dense"], medians["control"], strict=True)]
    interval = bootstrap_interval(ratios, seed=seed)
    control_interval = bootstrap_interval(controls, seed=seed + 1)
    verdict = latency_verdict(interval, control_interval, speedup_expected=speedup_expected)
    return {
        "rounds": len(ratios),
        **{key: _pooled(timed[key]) for key in _MODELS},
        "speedup": geometric_mean(ratios),
        "speedup_interval": _interval(interval),
        "control_ratio": geometric_mean(controls),
        "control_interval": _interval(control_interval),
        "verdict": verdict,
        "faster": verdict == "faster",
    }


def machine(device: torch.device) -> dict[str, Any]:
    """Where a comparison ran: device, its name, torch threads, confidence and control band."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "device": str(device),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "confidence": CONFIDENCE,
        "control_band": list(CONTROL_BAND),
    }
