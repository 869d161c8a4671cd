"""GPU workers for real: loop overhead, per-phase step time, structured speedups and 2:4 kernels.

One script, run on a machine with a CUDA GPU:

    python bench/gpu.py              # full run, writes the "gpu" section of docs/benchmarks.md
    python bench/gpu.py --smoke      # tiny sizes, any device (checks the script itself)

1. A ResNet-style cnn2d on synthetic CIFAR-shaped data (3x32x32, 10 classes) and a transformer
   on synthetic sequences (32 features x 128 tokens): a pruning job (adaptive criterion, cubic
   schedule, a checkpoint per step) against plain dense training of the same epochs, both with
   bf16 autocast; per-step time split into scoring, masking, fine-tuning and evaluation; peak
   GPU memory during the job against the model's own size. Target: overhead at most 1.10.
2. Channel pruning of the cnn2d at several ratios and `round_to` values, dense vs pruned latency
   on the GPU at batch sizes 1, 32 and 256 (interleaved rounds, medians).
3. 2:4 pruning of the transformer and the semi-structured sparse kernel timed against dense for
   every pruned Linear (`core.semistructured`), slowdowns included.
4. Memory and selection at scale: peak memory of adaptive scoring and of global mask selection
   on a larger transformer, as multiples of the model's size; global selection over about 200 M
   scores (`core.masks`, radix selection layer by layer) against concatenate-then-topk and
   concatenate-then-kthvalue, with the selection checked exact.
5. Many jobs in one process: GPU memory allocated after each of several jobs (no growth allowed).

`--json PATH` also writes every figure as JSON, section by section as each finishes, so a run
cut short still leaves what it measured.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import BENCHMARKS, command, machine, write_section
from core.data import TaskData
from core.errors import SpecInvalid
from core.finetune import epoch_generator, to_tensors, train_epoch
from core.importance import ScoringContext, make_importance
from core.latency import compare_latency
from core.loop import prune
from core.masks import apply_masks, nm_masks, prunable_parameters, unstructured_masks
from core.models import build_builtin
from core.semistructured import measure_two_four
from core.spec import JobSpec

SIZES = {
    "full": {
        "train": 20_000,
        "val": 2_000,
        "epochs": (5, 2, 5),
        "batch": 256,
        "cnn2d": {"widths": [64, 128, 256], "blocks": 2},
        "transformer": {"d_model": 256, "layers": 4, "heads": 8, "ffn": 1024},
        "image": (3, 32, 32),
        "sequence": (32, 128),
        "repeats": 3,
        "llm_shapes": ((4096, 4096), (11008, 4096), (4096, 11008)),
        "llm_tokens": 4096,
        "large_transformer": {"d_model": 1024, "layers": 8, "heads": 16, "ffn": 4096},
        "selection": {"layers": 48, "shape": (2048, 2048), "kthvalue_values": 11_000_000},
        "jobs": 5,
    },
    "smoke": {
        "train": 256,
        "val": 64,
        "epochs": (2, 1, 1),
        "batch": 64,
        "cnn2d": {"widths": [16, 32], "blocks": 1},
        "transformer": {"d_model": 32, "layers": 1, "heads": 4, "ffn": 64},
        "image": (3, 16, 16),
        "sequence": (8, 16),
        "repeats": 1,
        "llm_shapes": ((64, 64), (128, 64)),
        "llm_tokens": 64,
        "large_transformer": {"d_model": 64, "layers": 2, "heads": 4, "ffn": 128},
        "selection": {"layers": 4, "shape": (64, 64), "kthvalue_values": 8_000},
        "jobs": 2,
    },
}


def synthetic_task(name: str, shape: tuple[int, ...], *, train: int, val: int) -> TaskData:
    """Gaussian inputs labelled by a fixed random linear teacher: learnable, 10 classes."""
    rng = np.random.default_rng(0)
    features = int(np.prod(shape))
    teacher = rng.normal(size=(features, 10)).astype(np.float32) / np.sqrt(features)

    def split(count: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(count, features)).astype(np.float32)
        return x.reshape(count, *shape), (x @ teacher).argmax(axis=1).astype(np.int64)

    x_train, y_train = split(train)
    x_val, y_val = split(val)
    return TaskData(name, x_train, y_train, x_val, y_val, None, None, 10, shape)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dense_seconds(
    model: nn.Module, data: TaskData, *, epochs: int, batch: int, device: torch.device
) -> float:
    x, y = to_tensors(data.x_train, data.y_train, device=device)
    model = model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        train_epoch(
            model,
            x=x,
            y=y,
            optimizer=optimizer,
            batch_size=batch,
            generator=epoch_generator(seed=0, epoch=epoch),
        )
    synchronize(device)
    return time.perf_counter() - start


def job_spec(
    arch: str,
    *,
    granularity: str,
    target: float,
    epochs: tuple[int, int, int],
    batch: int,
    schedule: str = "cubic",
) -> JobSpec:
    steps, per_step, final = epochs
    return JobSpec.model_validate(
        {
            "model": {"arch": arch},
            "task": {"dataset": "mnist1d"},
            "prune": {
                "target_sparsity": target,
                "granularity": granularity,
                "criterion": "adaptive",
                "max_metric_drop": 1.0,
                "schedule": {"kind": schedule, "steps": steps},
            },
            "finetune": {
                "pretrain_epochs": 0,
                "epochs_per_step": per_step,
                "final_epochs": final,
                "lr": 1e-3,
                "batch_size": batch,
            },
        }
    )


def overhead(
    arch: str, model: nn.Module, data: TaskData, *, size: dict[str, Any], device: torch.device
) -> dict[str, Any]:
    """Job vs dense training of the same epochs, `repeats` interleaved pairs, medians."""
    spec = job_spec(
        arch, granularity="unstructured", target=0.8, epochs=size["epochs"], batch=size["batch"]
    )
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # warm up kernels and the allocator once so neither side pays first-call costs
    dense_seconds(copy.deepcopy(model), data, epochs=1, batch=size["batch"], device=device)
    jobs: list[float] = []
    denses: list[float] = []
    peak = 0
    for _ in range(size["repeats"]):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        with tempfile.TemporaryDirectory() as work:
            synchronize(device)
            start = time.perf_counter()
            outcome = prune(
                copy.deepcopy(model), data, spec, device=device, checkpoint_dir=Path(work)
            )
            synchronize(device)
            jobs.append(time.perf_counter() - start)
        if device.type == "cuda":
            peak = max(peak, torch.cuda.max_memory_allocated(device))
        denses.append(
            dense_seconds(
                copy.deepcopy(model),
                data,
                epochs=outcome.result.epochs,
                batch=size["batch"],
                device=device,
            )
        )
    phases: dict[str, float] = {}
    for report in outcome.result.steps:
        for phase, seconds in report.phase_seconds.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    job, dense = statistics.median(jobs), statistics.median(denses)
    return {
        "arch": arch,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": outcome.result.epochs,
        "steps": len(outcome.result.steps),
        "dense_s": dense,
        "job_s": job,
        "ratio": job / dense,
        "ratios": [j / d for j, d in zip(jobs, denses, strict=True)],
        "phases": phases,
        "peak_bytes": peak,
        "model_bytes": model_bytes,
        "sparsity": outcome.result.sparsity,
    }


def structured(
    model: nn.Module, data: TaskData, *, size: dict[str, Any], device: torch.device
) -> list[dict[str, Any]]:
    """Channel pruning at several ratios and `round_to` values; a row the model cannot take
    (nothing removable at that rounding) records the refusal instead of a timing."""
    rows: list[dict[str, Any]] = []
    for ratio, round_to in ((0.3, 1), (0.3, 8), (0.5, 1), (0.5, 8), (0.5, 32), (0.7, 8)):
        spec = job_spec(
            "cnn2d",
            granularity="channel",
            target=ratio,
            epochs=(1, 0, 0),
            batch=size["batch"],
            schedule="oneshot",
        )
        spec = spec.model_copy(
            update={"prune": spec.prune.model_copy(update={"round_to": round_to})}
        )
        try:
            outcome = prune(copy.deepcopy(model), data, spec, device=device)
        except SpecInvalid as refused:
            rows.append({"ratio": ratio, "round_to": round_to, "refused": str(refused)})
            continue
        latency = compare_latency(
            dense=outcome.dense_model.to(device).eval(),
            pruned=outcome.model.eval(),
            features=data.x_val,
            device=str(device),
            batch_sizes=(1, 32, 256),
        )
        widths = [m.out_channels for m in outcome.model.modules() if isinstance(m, nn.Conv2d)]
        rows.append({"ratio": ratio, "round_to": round_to, "widths": widths, "latency": latency})
    return rows


def two_four(
    model: nn.Module, data: TaskData, *, size: dict[str, Any], device: torch.device
) -> dict[str, Any]:
    spec = job_spec(
        "transformer",
        granularity="2:4",
        target=0.5,
        epochs=(1, 0, 0),
        batch=size["batch"],
        schedule="oneshot",
    )
    outcome = prune(copy.deepcopy(model), data, spec, device=device)
    return measure_two_four(outcome.model, device=device)


def two_four_shapes(*, size: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The 2:4 kernel at LLM-like Linear shapes (4096 tokens), magnitude 2:4 weights."""
    shapes = size["llm_shapes"]
    torch.manual_seed(0)
    layers = nn.Sequential(*(nn.Linear(i, o, bias=False) for o, i in shapes))
    params = prunable_parameters(layers)
    masks = nm_masks({n: p.detach().abs() for n, p in params.items()}, n=2, m=4)
    apply_masks(params, masks)
    return measure_two_four(layers, device=device, tokens=size["llm_tokens"])


def _timed(function: Any, *, device: torch.device, repeats: int) -> tuple[float, int]:
    """Median seconds of `repeats` calls after one warm-up, and the peak bytes allocated above
    what was allocated before the calls (0 off CUDA)."""
    function()
    synchronize(device)
    gc.collect()
    base = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        times.append(time.perf_counter() - start)
        del result
    peak = torch.cuda.max_memory_allocated(device) - base if device.type == "cuda" else 0
    return statistics.median(times), peak


def scoring_memory(data: TaskData, *, size: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Peak memory of adaptive scoring and of global selection, as multiples of the model size.

    The baseline is the model and its calibration batches on the device; the peaks are what each
    phase allocates above it (gradients, Taylor sums, activation norms, the scores themselves).
    """
    torch.manual_seed(0)
    model = build_builtin(
        "transformer",
        input_shape=size["sequence"],
        num_classes=10,
        **size["large_transformer"],
    ).to(device)
    spec = job_spec(
        "transformer", granularity="unstructured", target=0.5, epochs=(1, 0, 0), batch=32
    )
    x, y = to_tensors(data.x_train[:128], data.y_train[:128], device=device)
    context = ScoringContext(
        model=model,
        params=prunable_parameters(model),
        batches=[(x[i : i + 32], y[i : i + 32]) for i in range(0, 128, 32)],
        loss_fn=nn.functional.cross_entropy,
    )
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    criterion = make_importance("adaptive", spec.prune)
    scoring_s, scoring_peak = _timed(lambda: criterion(context), device=device, repeats=1)
    scores = criterion(context)
    model.zero_grad(set_to_none=True)
    selection_s, selection_peak = _timed(
        lambda: unstructured_masks(scores, sparsity=0.5, scope="global", min_density=0.01),
        device=device,
        repeats=1,
    )
    score_bytes = sum(t.numel() * t.element_size() for t in scores.values())
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "model_bytes": model_bytes,
        "scoring_s": scoring_s,
        "scoring_peak_bytes": scoring_peak,
        "selection_s": selection_s,
        # the scores are the selection's input; count only what selection adds above them
        "selection_peak_bytes": selection_peak,
        "score_bytes": score_bytes,
    }


def selection_at_scale(*, size: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Global selection of 90 % of ~200 M scores: core.masks vs concatenate + topk / kthvalue."""
    config = size["selection"]
    generator = torch.Generator(device=device).manual_seed(0)
    scores = {
        f"layer{i}": torch.randn(config["shape"], device=device, generator=generator).abs_()
        for i in range(config["layers"])
    }
    total = sum(t.numel() for t in scores.values())
    sparsity = 0.9
    count = round(sparsity * total)
    repeats = size["repeats"]

    def ours() -> dict[str, torch.Tensor]:
        return unstructured_masks(scores, sparsity=sparsity, scope="global", min_density=0.01)

    masks = ours()
    pruned = total - sum(int(m.sum()) for m in masks.values())
    highest_pruned = max(float(scores[n][~m].max()) for n, m in masks.items() if (~m).any())
    lowest_kept = min(float(scores[n][m].min()) for n, m in masks.items() if m.any())
    del masks
    ours_s, ours_peak = _timed(ours, device=device, repeats=repeats)

    def cat_topk() -> torch.Tensor:
        flat = torch.cat([t.flatten() for t in scores.values()])
        return torch.topk(flat, total - count, largest=True).values.min()

    topk_s, topk_peak = _timed(cat_topk, device=device, repeats=repeats)
    subset: list[torch.Tensor] = []
    taken = 0
    for tensor in scores.values():  # whole layers up to about `kthvalue_values` scores
        if taken >= config["kthvalue_values"]:
            break
        subset.append(tensor)
        taken += tensor.numel()
    sub_scores = {f"layer{i}": t for i, t in enumerate(subset)}

    def kth() -> torch.Tensor:
        flat = torch.cat([t.flatten() for t in subset])
        return torch.kthvalue(flat, round(sparsity * taken)).values

    def ours_subset() -> dict[str, torch.Tensor]:
        return unstructured_masks(sub_scores, sparsity=sparsity, scope="global", min_density=0.01)

    kth_s, _ = _timed(kth, device=device, repeats=repeats)
    ours_subset_s, _ = _timed(ours_subset, device=device, repeats=repeats)
    return {
        "values": total,
        "layers": len(scores),
        "score_bytes": total * 4,
        "pruned": pruned,
        "expected": count,
        "exact": pruned == count and highest_pruned <= lowest_kept,
        "ours_s": ours_s,
        "ours_peak_bytes": ours_peak,
        "cat_topk_s": topk_s,
        "cat_topk_peak_bytes": topk_peak,
        "subset_values": taken,
        "kthvalue_s": kth_s,
        "ours_subset_s": ours_subset_s,
    }


def memory_across_jobs(data: TaskData, *, size: dict[str, Any], device: torch.device) -> list[int]:
    """Bytes allocated on the device after each of several jobs run back to back in one process."""
    spec = job_spec(
        "cnn2d", granularity="unstructured", target=0.7, epochs=(2, 1, 1), batch=size["batch"]
    )
    allocated = []
    for _ in range(size["jobs"]):
        torch.manual_seed(0)
        model = build_builtin("cnn2d", input_shape=size["image"], num_classes=10, **size["cnn2d"])
        outcome = prune(model, data, spec, device=device)
        del outcome, model
        gc.collect()
        synchronize(device)
        allocated.append(torch.cuda.memory_allocated(device) if device.type == "cuda" else 0)
    return allocated


def _mib(value: float) -> str:
    return f"{value / 2**20:.0f} MiB"


def _two_four_rows(nm: dict[str, Any]) -> list[str]:
    lines = []
    if not nm["measured"]:
        lines.append(f"Not measured: {nm['reason'] or 'no layer accepted by the kernel'}.")
    if nm["layers"]:
        lines += ["| layer | shape | dense ms | sparse ms | speedup |", "|---|---|---|---|---|"]
    for layer in nm["layers"]:
        if "speedup" in layer:
            lines.append(
                f"| {layer['name']} | {layer['shape']} | {1e3 * layer['dense_s']:.3f} | "
                f"{1e3 * layer['sparse_s']:.3f} | **{layer['speedup']:.2f}x** |"
            )
        else:
            skipped = layer["skipped"]
            lines.append(f"| {layer['name']} | {layer['shape']} | skipped: {skipped} | | |")
    return lines


def render(results: dict[str, Any]) -> str:
    """The markdown section; sections missing from `results` (a run cut short) are left out."""
    lines = ["## GPU (`bench/gpu.py`)", "", f"Device: **{results['device']}**.", ""]
    if "overhead" in results:
        lines += [
            "### Loop overhead and per-step phases (bf16 autocast)",
            "",
            "Job (adaptive criterion, cubic schedule to 80 %, a checkpoint per step) against dense "
            "training of the same epochs; medians of interleaved pairs; the phases are one job's "
            "totals.",
            "",
            "| model | params | epochs | dense (s) | job (s) | ratio (each pair) | scoring "
            "| masking | fine-tuning | evaluation | peak mem / model |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in results["overhead"]:
            phases = row["phases"]
            memory = row["peak_bytes"] / row["model_bytes"] if row["peak_bytes"] else float("nan")
            pairs = ", ".join(f"{r:.3f}" for r in row["ratios"])
            lines.append(
                f"| {row['arch']} | {row['params'] / 1e6:.1f}M | {row['epochs']} | "
                f"{row['dense_s']:.2f} | {row['job_s']:.2f} | **{row['ratio']:.3f}** ({pairs}) | "
                + " | ".join(
                    f"{phases.get(p, 0.0):.2f}s"
                    for p in ("scoring", "masking", "finetuning", "evaluation")
                )
                + f" | {memory:.1f}x |"
            )
    if "structured" in results:
        lines += [
            "",
            "### Channel pruning: measured latency on the device",
            "",
            "| ratio | round_to | conv widths | batch | dense ms | pruned ms | speedup |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in results["structured"]:
            if "refused" in row:
                lines.append(
                    f"| {row['ratio']} | {row['round_to']} | refused: {row['refused']} | | | | |"
                )
                continue
            for entry in row["latency"]["batches"]:
                lines.append(
                    f"| {row['ratio']} | {row['round_to']} | {row['widths']} | "
                    f"{entry['batch_size']} | {1e3 * entry['dense']['median_s']:.3f} | "
                    f"{1e3 * entry['pruned']['median_s']:.3f} | **{entry['speedup']:.2f}x** |"
                )
    if "two_four" in results:
        lines += ["", "### 2:4 semi-structured kernels: the transformer (fp16, 1024 tokens)"]
        lines += ["", *_two_four_rows(results["two_four"])]
    if "two_four_shapes" in results:
        lines += ["", "### 2:4 semi-structured kernels: LLM-like shapes (fp16, 4096 tokens)"]
        lines += ["", *_two_four_rows(results["two_four_shapes"])]
    if "scoring_memory" in results:
        row = results["scoring_memory"]
        model = row["model_bytes"]
        lines += [
            "",
            "### Memory of scoring and selection",
            "",
            f"Transformer of {row['params'] / 1e6:.1f}M parameters ({_mib(model)}), adaptive "
            "criterion on 4 calibration batches of 32 sequences; peaks above the model and its "
            "batches already on the device.",
            "",
            "| phase | time (s) | peak above baseline | / model size |",
            "|---|---|---|---|",
            f"| scoring | {row['scoring_s']:.3f} | {_mib(row['scoring_peak_bytes'])} | "
            f"**{row['scoring_peak_bytes'] / model:.2f}x** |",
            f"| global selection (scores held) | {row['selection_s']:.3f} | "
            f"{_mib(row['selection_peak_bytes'])} | "
            f"**{row['selection_peak_bytes'] / model:.2f}x** |",
        ]
    if "selection" in results:
        row = results["selection"]
        lines += [
            "",
            "### Global threshold selection at scale",
            "",
            f"{row['values'] / 1e6:.0f}M scores in {row['layers']} layers "
            f"({_mib(row['score_bytes'])}), 90 % pruned; medians. Exact selection "
            f"(pruned count {row['pruned']:,} of {row['expected']:,} asked, every pruned score "
            f"<= every kept score): **{'yes' if row['exact'] else 'NO'}**.",
            "",
            "| method | values | time (ms) | extra memory |",
            "|---|---|---|---|",
            f"| core.masks (radix selection, layer by layer) | {row['values'] / 1e6:.0f}M | "
            f"{1e3 * row['ours_s']:.1f} | {_mib(row['ours_peak_bytes'])} |",
            f"| torch.cat + torch.topk (threshold only) | {row['values'] / 1e6:.0f}M | "
            f"{1e3 * row['cat_topk_s']:.1f} | {_mib(row['cat_topk_peak_bytes'])} |",
            f"| core.masks (joined int32 keys, one topk) | {row['subset_values'] / 1e6:.1f}M | "
            f"{1e3 * row['ours_subset_s']:.1f} | |",
            f"| torch.cat + torch.kthvalue (threshold only) | {row['subset_values'] / 1e6:.1f}M | "
            f"{1e3 * row['kthvalue_s']:.1f} | |",
        ]
    if "jobs_allocated" in results:
        allocated = results["jobs_allocated"]
        lines += [
            "",
            "### Many jobs in one process",
            "",
            f"{len(allocated)} cnn2d jobs back to back; bytes allocated on the device after each: "
            + ", ".join(f"{b:,}" for b in allocated)
            + f" (growth from the first: **{allocated[-1] - allocated[0]:,} bytes**).",
        ]
    return "\n".join(lines)


SECTIONS = (
    "overhead",
    "structured",
    "two_four",
    "two_four_shapes",
    "scoring_memory",
    "selection",
    "jobs_allocated",
)


def write_from_json(paths: list[Path], *, benchmarks: Path) -> None:
    """Merge the JSON of one or more runs (later files win per section) and write the section,
    stamped with the machine, command and date that the runs recorded."""
    merged: dict[str, Any] = {}
    for path in paths:
        merged |= json.loads(path.read_text())
    stamps = {json.loads(path.read_text())["stamp"] for path in paths}
    body = render(merged)
    body += "\n\n" + "\n".join(f"Measured: {stamp}" for stamp in sorted(stamps))
    write_section("gpu", body, path=benchmarks, stamp_note="rendered from the runs' JSON")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; any device")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here as JSON")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    parser.add_argument("--repeats", type=int, help="interleaved job/dense pairs per model")
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="write docs/benchmarks.md from earlier runs' --json files (no measuring)",
    )
    parser.add_argument(
        "--benchmarks", type=Path, default=BENCHMARKS, help="the markdown file to update"
    )
    args = parser.parse_args()
    if args.from_json:
        missing = [str(path) for path in args.from_json if not path.is_file()]
        if missing:
            parser.error(f"--from-json: no such file: {', '.join(missing)}")
        write_from_json(args.from_json, benchmarks=args.benchmarks)
        return 0
    chosen = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"--sections: unknown {unknown}; known: {', '.join(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device; use --smoke --device cpu to check the script",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    size = dict(SIZES["smoke" if args.smoke else "full"])
    if args.repeats is not None:
        size["repeats"] = args.repeats
    images = synthetic_task("images", size["image"], train=size["train"], val=size["val"])
    sequences = synthetic_task("sequences", size["sequence"], train=size["train"], val=size["val"])
    torch.manual_seed(0)
    cnn = build_builtin("cnn2d", input_shape=size["image"], num_classes=10, **size["cnn2d"])
    transformer = build_builtin(
        "transformer", input_shape=size["sequence"], num_classes=10, **size["transformer"]
    )
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "stamp": f"`{command()}` · {machine()} · {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
    }
    runs = {
        "overhead": lambda: [
            overhead("cnn2d", cnn, images, size=size, device=device),
            overhead("transformer", transformer, sequences, size=size, device=device),
        ],
        "structured": lambda: structured(cnn, images, size=size, device=device),
        "two_four": lambda: two_four(transformer, sequences, size=size, device=device),
        "two_four_shapes": lambda: two_four_shapes(size=size, device=device),
        "scoring_memory": lambda: scoring_memory(sequences, size=size, device=device),
        "selection": lambda: selection_at_scale(size=size, device=device),
        "jobs_allocated": lambda: memory_across_jobs(images, size=size, device=device),
    }
    begun = time.perf_counter()
    for section in chosen:
        results[section] = runs[section]()
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"[{time.perf_counter() - begun:7.1f}s] {section} done", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    text = render(results)
    print(text)
    if not args.no_write and not args.smoke:
        write_section("gpu", text, path=args.benchmarks)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
