"""Tokens per second of `generate` for causal LMs: a dense model against its pruned copy.

Each model generates exactly `new_tokens` tokens greedily (no early stop at an end token, the
key/value cache on) after a prompt of `prompt_length` tokens, so both do the same work. The
three models (dense, pruned, and a copy of dense as the control) are timed in the interleaved
rounds of `core.latency`, and the ratio dense time / pruned time per round, which is pruned
tokens/s over dense tokens/s, gets the same geometric mean, bootstrap interval and verdict as
the forward-pass latency.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from core.hf.adapter import HFAdapter
from core.latency import (
    MAX_ROUNDS,
    batch_of,
    interleaved_rounds,
    load_average,
    machine,
    round_summary,
)


class GenerationRun(nn.Module):
    """A causal LM's `generate` behind a forward call, so the latency timer can time it.

    The input is a packed (N, 2, L) batch of prompt ids and mask; the output the generated
    ids, (N, L + new_tokens).
    """

    def __init__(self, model: nn.Module, *, new_tokens: int) -> None:
        super().__init__()
        if new_tokens < 1:
            raise ValueError(f"new_tokens={new_tokens!r} must be positive")
        self.model = model.hf if isinstance(model, HFAdapter) else model
        self.new_tokens = new_tokens
        if not callable(getattr(self.model, "generate", None)):
            raise ValueError(f"{type(self.model).__name__} has no generate(): not a causal LM")

    def forward(self, batch: Tensor) -> Tensor:
        config = getattr(self.model, "config", None)
        pad = getattr(config, "pad_token_id", None)
        generated: Tensor = self.model.generate(  # type: ignore[operator]
            input_ids=batch[:, 0],
            attention_mask=batch[:, 1],
            max_new_tokens=self.new_tokens,
            min_new_tokens=self.new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=0 if pad is None else pad,
        )
        return generated


def prompts(
    features: np.ndarray, *, batch_size: int, prompt_length: int, device: torch.device
) -> Tensor:
    """A packed (batch_size, 2, prompt_length) prompt batch from packed text `features`: the
    first `prompt_length` token ids of each row (padding ids included, cycled when the texts
    are shorter), every position attended, so no row stops early or needs left padding."""
    if prompt_length < 1:
        raise ValueError(f"prompt_length={prompt_length!r} must be positive")
    ids = features[:, 0, :prompt_length]
    if ids.shape[1] < prompt_length:
        ids = np.resize(ids, (ids.shape[0], prompt_length))
    packed = np.stack([ids, np.ones_like(ids)], axis=1)
    return batch_of(packed, batch_size=batch_size, device=device)


def compare_generation(
    *,
    dense: nn.Module,
    pruned: nn.Module,
    features: np.ndarray,
    device: str,
    batch_sizes: Sequence[int] = (1,),
    prompt_length: int = 32,
    new_tokens: int = 32,
    seconds: float = 10.0,
    max_rounds: int = MAX_ROUNDS,
) -> dict[str, Any]:
    """Tokens/s of `generate` for dense, pruned and a same-model control on `device`.

    Both models must already be on `device`. Per batch size the three models are timed in up
    to `max_rounds` interleaved rounds within an equal share of `seconds`.

    Args:
        dense: the dense causal LM (an `HFAdapter` or the Hugging Face model).
        pruned: the pruned one.
        features: packed (N, 2, L) text the prompts are cut from.
        device: where the models run.
        batch_sizes: prompts generated at once.
        prompt_length: prompt tokens per row.
        new_tokens: tokens generated per row.
        seconds: the most time spent timing, all batch sizes together.
        max_rounds: most interleaved rounds per batch size.

    Returns:
        {"device", "device_name", "torch_threads", "confidence", "control_band",
        "load_average", "prompt_length", "new_tokens", "seconds", "batches": [...]}, each batch
        {"batch_size", "tokens_per_s": {"dense", "pruned", "control"} (generated tokens per
        second of the pooled median), and `core.latency.round_summary`'s keys: "speedup" is
        pruned tokens/s over dense tokens/s, with its interval and verdict}.
    """
    if not seconds >= 0:
        raise ValueError(f"seconds={seconds!r} must be non-negative")
    target = torch.device(device)
    models = {
        "dense": GenerationRun(dense, new_tokens=new_tokens),
        "pruned": GenerationRun(pruned, new_tokens=new_tokens),
        "control": GenerationRun(copy.deepcopy(dense), new_tokens=new_tokens),
    }
    before = load_average()
    batches: list[dict[str, Any]] = []
    for size in batch_sizes:
        inputs = prompts(features, batch_size=size, prompt_length=prompt_length, device=target)
        timed = interleaved_rounds(
            dict(models),
            inputs=inputs,
            seconds=seconds / max(len(batch_sizes), 1),
            max_rounds=max_rounds,
        )
        summary = round_summary(timed, seed=size, speedup_expected=True)
        rates = {
            key: size * new_tokens / summary[key]["median_s"] if summary[key] else None
            for key in models
        }
        batches.append({"batch_size": size, "tokens_per_s": rates, **summary})
    return {
        **machine(target),
        "load_average": {"before": before, "after": load_average()},
        "prompt_length": prompt_length,
        "new_tokens": new_tokens,
        "seconds": seconds,
        "batches": batches,
    }
