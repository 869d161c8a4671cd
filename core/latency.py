"""Measured inference latency: one model on its own, and a dense model against its pruned copy."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

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


_ROUNDS = 3
_REPEATS_PER_ROUND = 10
_SECONDS_PER_ROUND = 2.0


def _pooled(rounds: Sequence[dict[str, float]]) -> dict[str, float]:
    """Median over the rounds' medians and p90s; runs summed."""
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


def compare_latency(
    *,
    dense: nn.Module,
    pruned: nn.Module,
    features: np.ndarray,
    device: str,
    batch_sizes: Sequence[int],
) -> dict[str, Any]:
    """Measure dense and pruned latency at each batch size on `device`.

    Both models must already be on `device`. The speedup is dense median / pruned median; it and
    `faster` are derived from the two measurements of the same batch size only.

    Args:
        dense: the dense model.
        pruned: the pruned model.
        features: examples to draw batches from (N, *input_shape).
        device: where the models run ("cpu", "cuda", "cuda:1", ...).
        batch_sizes: batch sizes to time.

    Returns:
        {"device", "device_name", "torch_threads", "batches": [{"batch_size", "dense", "pruned",
        "speedup", "faster"}]}, where "dense"/"pruned" are `measure_latency` results.
    """
    target = torch.device(device)
    batches: list[dict[str, Any]] = []
    for size in batch_sizes:
        inputs = batch_of(features, batch_size=size, device=target)
        # Interleave the two models in rounds so that a burst of load on a shared machine
        # lands on both, not on whichever happened to be timed second.
        rounds: dict[str, list[dict[str, float]]] = {"dense": [], "pruned": []}
        for _ in range(_ROUNDS):
            for key, model in (("dense", dense), ("pruned", pruned)):
                rounds[key].append(
                    measure_latency(
                        model,
                        example_inputs=inputs,
                        repeats=_REPEATS_PER_ROUND,
                        max_seconds=_SECONDS_PER_ROUND,
                    )
                )
        dense_time, pruned_time = _pooled(rounds["dense"]), _pooled(rounds["pruned"])
        batches.append(
            {
                "batch_size": size,
                "dense": dense_time,
                "pruned": pruned_time,
                "speedup": (
                    dense_time["median_s"] / pruned_time["median_s"]
                    if pruned_time["median_s"] > 0
                    else None
                ),
                "faster": pruned_time["median_s"] < dense_time["median_s"],
            }
        )
    name = torch.cuda.get_device_name(target) if target.type == "cuda" else "cpu"
    return {
        "device": str(target),
        "device_name": name,
        "torch_threads": torch.get_num_threads(),
        "batches": batches,
    }
