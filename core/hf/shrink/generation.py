"""Tokens per second of `generate` for a causal LM, dense against pruned, measured in
interleaved rounds so that both see the same machine state."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn

from core.latency import load_average

MAX_ROUNDS = 10


def _timed(model: Any, prompt: Tensor, *, new_tokens: int, pad: int) -> float:
    device = prompt.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def generation_speed(
    dense: nn.Module, pruned: nn.Module, *, prompt: Tensor, new_tokens: int, seconds: float
) -> dict[str, Any]:
    """Greedy `generate` of `new_tokens` tokens after `prompt` (batch, length) by both models
    (already on the prompt's device): median tokens/s of each over interleaved rounds, and
    their ratio. At least two rounds run (the first warms up and is not counted), at most
    MAX_ROUNDS, stopping once `seconds` are spent."""
    config: Any = getattr(dense, "config", None)
    pad = int(getattr(config, "pad_token_id", None) or getattr(config, "eos_token_id", 0) or 0)
    timings: dict[str, list[float]] = {"dense": [], "pruned": []}
    started = time.perf_counter()
    for round_number in range(MAX_ROUNDS + 1):
        for name, model in (("dense", dense), ("pruned", pruned)):
            elapsed = _timed(model, prompt, new_tokens=new_tokens, pad=pad)
            if round_number > 0:
                timings[name].append(elapsed)
        if round_number >= 2 and time.perf_counter() - started >= seconds:
            break
    tokens = prompt.shape[0] * new_tokens
    speeds = {name: tokens / statistics.median(values) for name, values in timings.items()}
    return {
        "batch_size": int(prompt.shape[0]),
        "prompt_tokens": int(prompt.shape[1]),
        "new_tokens": new_tokens,
        "rounds": len(timings["dense"]),
        "tokens_per_s_dense": speeds["dense"],
        "tokens_per_s_pruned": speeds["pruned"],
        "speedup": speeds["pruned"] / speeds["dense"],
        "load_average": load_average(),
    }
