"""The benchmark's causal LM: a small Llama built from a LlamaConfig, trained on BBC News once.

The model (hidden 128, 4 blocks, intermediate 352, tied embeddings, a 2048-token byte-level
BPE vocabulary: 1.1 M parameters, sized for what a heavily shared 2-core CPU trains in half an
hour) is trained on the training articles for a wall-clock budget with AdamW and a
cosine learning rate that follows the elapsed fraction of that budget (the shared CPU's speed
varies, the budget does not). The trained model is saved with `save_pretrained` (safetensors)
under bench/.cache/ with a JSON note of how it was trained; a rerun with the same settings loads
it and skips training.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.llm_text import CACHE


@dataclass(frozen=True)
class LMSettings:
    """Architecture and training of the benchmark LM (the cache key)."""

    vocab: int = 2048
    hidden: int = 128
    layers: int = 4
    intermediate: int = 352
    heads: int = 4
    seq: int = 128
    batch: int = 8
    lr: float = 6e-3
    warmup_steps: int = 10
    train_seconds: float = 1800.0
    seed: int = 0

    def key(self) -> str:
        return "lm-" + "-".join(f"{value}" for value in asdict(self).values())


def build_llama(
    vocab: int,
    layers: int,
    hidden: int,
    intermediate: int,
    *,
    heads: int = 4,
    seq: int = 128,
    seed: int = 0,
) -> nn.Module:
    """A LlamaForCausalLM with random weights, built from its config (no download)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=seq,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(config)


def windows(tokens: Tensor, count: int, seq: int, generator: torch.Generator) -> Tensor:
    """`count` random windows of `seq` consecutive tokens, (count, seq)."""
    starts = torch.randint(0, tokens.numel() - seq - 1, (count,), generator=generator)
    return torch.stack([tokens[start : start + seq] for start in starts.tolist()])


def _learning_rate(settings: LMSettings, step: int, elapsed: float) -> float:
    """Linear warm-up over the first steps, then cosine decay over the time budget to 10 %."""
    if step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    progress = min(1.0, elapsed / settings.train_seconds)
    return settings.lr * (0.1 + 0.45 * (1.0 + math.cos(math.pi * progress)))


def train(model: nn.Module, tokens: Tensor, settings: LMSettings) -> dict[str, Any]:
    """Train `model` in place on random windows of `tokens` until the time budget is spent."""
    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=0.1)
    model.train()
    started = time.perf_counter()
    step, losses = 0, []
    while (elapsed := time.perf_counter() - started) < settings.train_seconds:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(settings, step, elapsed)
        ids = windows(tokens, settings.batch, settings.seq, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 10 == 0:
            recent = sum(losses[-10:]) / 10
            print(f"step {step} {elapsed:.0f} s train loss {recent:.3f}", flush=True)
    model.eval()
    return {
        "steps": step,
        "seconds": time.perf_counter() - started,
        "tokens": step * settings.batch * settings.seq,
        "final_train_loss": sum(losses[-25:]) / max(1, len(losses[-25:])),
    }


def perplexity(model: nn.Module, tokens: Tensor, seq: int, batch: int = 16) -> float:
    """exp(mean next-token loss) over consecutive non-overlapping windows of `tokens`."""
    usable = tokens.numel() // seq * seq
    chunks = tokens[:usable].reshape(-1, seq)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(chunks), batch):
            ids = chunks[start : start + batch]
            loss = model(input_ids=ids, labels=ids).loss
            predicted = ids.numel() - len(ids)  # the first token of a window is not predicted
            total += float(loss) * predicted
            count += predicted
    return math.exp(total / count)


def trained_lm(train_tokens: Tensor, settings: LMSettings) -> tuple[nn.Module, dict[str, Any]]:
    """The trained LM and its training note: from the cache, or trained now and cached."""
    from transformers import LlamaForCausalLM

    directory: Path = CACHE / settings.key()
    note_path = directory / "training.json"
    if note_path.exists():
        model = LlamaForCausalLM.from_pretrained(directory).eval()
        note: dict[str, Any] = json.loads(note_path.read_text())
        return model, {**note, "cached": True}
    model = build_llama(
        settings.vocab,
        settings.layers,
        settings.hidden,
        settings.intermediate,
        heads=settings.heads,
        seq=settings.seq,
        seed=settings.seed,
    )
    note = {"settings": asdict(settings), **train(model, train_tokens, settings)}
    model.save_pretrained(directory)
    note_path.write_text(json.dumps(note, indent=1))
    return model, {**note, "cached": False}
