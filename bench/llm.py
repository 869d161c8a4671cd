"""One-shot pruning benchmarks on language models: perplexity, accuracy, time and memory.

1. Causal LM: a small Llama-architecture model built from a LlamaConfig (`bench/llm_lm.py`,
   1.1 M parameters, byte-level BPE vocabulary) trained on BBC News once (cached); held-out
   perplexity dense; 50 % unstructured and 2:4 with magnitude, Wanda and SparseGPT; 70 % with
   and without OWL. Each run calls the engine (`core.oneshot.engine.prune_oneshot`).
2. MiniLM on BBC News (`bench/llm_minilm.py`): the real pretrained all-MiniLM-L6-v2,
   fine-tuned once (cached); held-out accuracy dense vs Wanda / SparseGPT at 50 % and 2:4,
   with the seconds and peak memory of each prune.
3. Time and peak memory of Wanda and SparseGPT against depth (random weights, each depth in a
   fresh process).

Writes the "llm" section of docs/benchmarks.md, with a verdict on every target.

    python bench/llm.py                       # needs: pip install -e '.[bench]'
    python bench/llm.py --part lm             # one part (lm, minilm, scaling); its figures are
    python bench/llm.py --render-only         # kept under bench/.cache/llm-results/

On a CPU shared with other work, `--threads 1` is faster than two threads that wait for each
other.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.common import command, write_section  # noqa: E402
from bench.llm_lm import LMSettings, build_llama, perplexity, trained_lm, windows  # noqa: E402
from bench.llm_minilm import MiniLMSettings, minilm_bench  # noqa: E402
from bench.llm_render import render  # noqa: E402
from bench.llm_text import CACHE, bbc_articles, bpe_tokenizer, token_stream  # noqa: E402
from core.oneshot.blocks import find_blocks, prunable_layers, weight_matrix  # noqa: E402
from core.oneshot.config import OneShotConfig  # noqa: E402
from core.oneshot.engine import prune_oneshot  # noqa: E402
from tests.support.torchvision_ops import prepare_torchvision  # noqa: E402

prepare_torchvision()

LM_RUNS: list[tuple[str, float, str, str]] = [
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


def resident_peak() -> int:
    """The process's resident-set peak (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def lm_quality(args: argparse.Namespace) -> dict[str, Any]:
    """Dense and pruned held-out perplexity of the trained LM, one engine run per setting."""
    articles = bbc_articles()
    settings = LMSettings(train_seconds=args.train_seconds)
    tokenizer = bpe_tokenizer(articles.train, settings.vocab)
    train_tokens = token_stream(tokenizer, articles.train)
    held_tokens = token_stream(tokenizer, articles.held)[: args.eval_tokens]
    model, note = trained_lm(train_tokens, settings)
    generator = torch.Generator().manual_seed(1)
    calibration = list(windows(train_tokens, args.calibration, settings.seq, generator).split(16))
    dense = perplexity(model, held_tokens, settings.seq)
    print(f"dense perplexity {dense:.2f} (uniform {settings.vocab})", flush=True)
    hollow = copy.deepcopy(model)  # how much the blocks carry: every prunable weight zeroed
    for block in find_blocks(hollow)[1]:
        for layer in prunable_layers(block).values():
            weight_matrix(layer).data.zero_()
    blocks_zeroed = perplexity(hollow, held_tokens, settings.seq)
    del hollow
    rows = []
    for method, target, granularity, allocation in LM_RUNS:
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
            "perplexity": perplexity(pruned, held_tokens, settings.seq),
            "sparsity": result.sparsity,
            "seconds": result.seconds,
            "block_sparsities": result.block_sparsities,
            "block_errors": [block.reconstruction_error for block in result.blocks],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del pruned
    return {
        "settings": asdict(settings),
        "note": note,
        "params": sum(p.numel() for p in model.parameters()),
        "train_tokens": train_tokens.numel(),
        "held_tokens": held_tokens.numel(),
        "calibration": args.calibration,
        "dense": dense,
        "blocks_zeroed": blocks_zeroed,
        "rows": rows,
    }


# A fixed mmap threshold: glibc otherwise raises it each time a large block is freed, so later
# temporaries come from the heap, which it does not give back, and the resident peak ratchets
# up with the number of blocks pruned (measured: Wanda 16 -> 53 MiB from 2 to 8 blocks with the
# default, 28 -> 28 MiB with the threshold fixed) although the engine holds no more.
PROBE_ENV = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def memory_probe(depth: int, hidden: int, intermediate: int, samples: int) -> dict[str, Any]:
    """Time and peak memory of Wanda and SparseGPT on a random model of `depth` blocks."""
    seq = LMSettings().seq
    out: dict[str, Any] = {"depth": depth}
    tokens = torch.randint(0, 4096, (samples, seq), generator=torch.Generator().manual_seed(0))
    calibration = list(tokens.split(16))
    for method in ("wanda", "sparsegpt"):
        config = OneShotConfig(method=method, target_sparsity=0.5)
        # a one-block run first, so that the allocator's and the libraries' one-time growth
        # is not counted against the measured run
        warm_up = build_llama(4096, 1, hidden, intermediate, seq=seq).eval()
        prune_oneshot(warm_up, calibration, config)
        del warm_up
        model = build_llama(4096, depth, hidden, intermediate, seq=seq).eval()
        out["params"] = sum(p.numel() for p in model.parameters())
        reset_peak()
        before = resident_peak()
        result = prune_oneshot(model, calibration, config)
        out[method] = {
            "seconds": result.seconds,
            "per_block_seconds": result.seconds / depth,
            "peak_above_model_bytes": resident_peak() - before,
            "activation_bytes": max(block.activation_bytes for block in result.blocks),
        }
        del model
    return out


def scaling(args: argparse.Namespace) -> dict[str, Any]:
    """The memory probe at each depth, each in a fresh process (its own resident peak)."""
    rows = []
    for depth in args.depths:
        command = [
            sys.executable,
            __file__,
            "--probe",
            str(depth),
            "--probe-hidden",
            str(args.probe_hidden),
            "--probe-intermediate",
            str(args.probe_intermediate),
            "--threads",
            str(args.threads),
            "--probe-samples",
            str(args.probe_samples),
        ]
        output = subprocess.run(
            command, check=True, capture_output=True, text=True, env=PROBE_ENV
        ).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    return {
        "hidden": args.probe_hidden,
        "intermediate": args.probe_intermediate,
        "samples": args.probe_samples,
        "rows": rows,
    }


PARTS = ("lm", "minilm", "scaling")
RESULTS = CACHE / "llm-results"


def run_part(part: str, args: argparse.Namespace) -> None:
    """Measure one part and keep its figures (JSON) for the render."""
    load_before = os.getloadavg()
    if part == "lm":
        figures: Any = lm_quality(args)
    elif part == "minilm":
        figures = minilm_bench(
            bbc_articles(), MiniLMSettings(), args.minilm_calibration, resident_peak, reset_peak
        )
    else:
        figures = scaling(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {"figures": figures, "load": [load_before, os.getloadavg()], "command": command()}
    (RESULTS / f"{part}.json").write_text(json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-seconds", type=float, default=LMSettings().train_seconds)
    parser.add_argument("--calibration", type=int, default=32, help="LM calibration windows")
    parser.add_argument("--eval-tokens", type=int, default=8192)
    parser.add_argument("--minilm-calibration", type=int, default=64)
    parser.add_argument("--depths", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--probe-hidden", type=int, default=256)
    parser.add_argument("--probe-intermediate", type=int, default=688)
    parser.add_argument("--probe-samples", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--part",
        choices=PARTS,
        action="append",
        help="measure only this part (repeatable; the parts can run in parallel processes); "
        "without it every part is measured",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="write the section from the kept figures"
    )
    parser.add_argument("--probe", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe is not None:
        probe = memory_probe(
            args.probe, args.probe_hidden, args.probe_intermediate, args.probe_samples
        )
        print(json.dumps(probe))
        return
    if not args.render_only:
        for part in args.part or PARTS:
            run_part(part, args)
        if args.part:
            return
    records = {part: json.loads((RESULTS / f"{part}.json").read_text()) for part in PARTS}
    # the same Wanda 2:4 through run_job with recovery (bench/shrink.py --part minilm), if run
    recovered = CACHE / "shrink-results" / "minilm-wanda-24-recover.json"
    if recovered.exists():
        records["minilm"]["figures"]["recovered"] = json.loads(recovered.read_text())
    body = render(
        records["lm"]["figures"],
        records["minilm"]["figures"],
        records["scaling"]["figures"],
        [load[0] for record in records.values() for load in record["load"]],
        {part: record.get("command", "") for part, record in records.items()},
    )
    print(body)
    if not args.no_write:
        write_section("llm", body)


if __name__ == "__main__":
    main()
