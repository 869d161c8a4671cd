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
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from core.data import TaskData
from core.finetune import epoch_generator, to_tensors, train_epoch
from core.latency import compare_latency
from core.loop import prune
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
    },
    "smoke": {
        "train": 256,
        "val": 64,
        "epochs": (2, 1, 1),
        "batch": 64,
        "cnn2d": {"widths": [8, 16], "blocks": 1},
        "transformer": {"d_model": 32, "layers": 1, "heads": 4, "ffn": 64},
        "image": (3, 16, 16),
        "sequence": (8, 16),
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
    spec = job_spec(
        arch, granularity="unstructured", target=0.8, epochs=size["epochs"], batch=size["batch"]
    )
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    # warm up kernels and the allocator once so neither side pays first-call costs
    dense_seconds(copy.deepcopy(model), data, epochs=1, batch=size["batch"], device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as work:
        synchronize(device)
        start = time.perf_counter()
        outcome = prune(copy.deepcopy(model), data, spec, device=device, checkpoint_dir=Path(work))
        synchronize(device)
        job = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    dense = dense_seconds(
        copy.deepcopy(model), data, epochs=outcome.result.epochs, batch=size["batch"], device=device
    )
    phases: dict[str, float] = {}
    for report in outcome.result.steps:
        for phase, seconds in report.phase_seconds.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
    return {
        "arch": arch,
        "epochs": outcome.result.epochs,
        "dense_s": dense,
        "job_s": job,
        "ratio": job / dense,
        "phases": phases,
        "peak_bytes": peak,
        "model_bytes": model_bytes,
        "sparsity": outcome.result.sparsity,
    }


def structured(
    model: nn.Module, data: TaskData, *, size: dict[str, Any], device: torch.device
) -> list[dict[str, Any]]:
    rows = []
    for ratio, round_to in ((0.3, 8), (0.5, 8), (0.5, 1), (0.5, 32), (0.7, 8)):
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
        outcome = prune(copy.deepcopy(model), data, spec, device=device)
        latency = compare_latency(
            dense=outcome.dense_model.eval(),
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


def render(results: dict[str, Any], device: torch.device) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    lines = [
        "## GPU (`bench/gpu.py`)",
        "",
        f"Device: **{name}**.",
        "",
        "### Loop overhead and per-step phases (bf16 autocast)",
        "",
        "| model | epochs | dense (s) | job (s) | ratio | scoring | masking | fine-tuning "
        "| evaluation | peak mem / model |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["overhead"]:
        phases = row["phases"]
        memory = row["peak_bytes"] / row["model_bytes"] if row["peak_bytes"] else float("nan")
        lines.append(
            f"| {row['arch']} | {row['epochs']} | {row['dense_s']:.2f} | {row['job_s']:.2f} | "
            f"**{row['ratio']:.3f}** | "
            + " | ".join(
                f"{phases.get(p, 0.0):.2f}s"
                for p in ("scoring", "masking", "finetuning", "evaluation")
            )
            + f" | {memory:.1f}x |"
        )
    lines += [
        "",
        "### Channel pruning: measured latency on the device",
        "",
        "| ratio | round_to | conv widths | batch | dense ms | pruned ms | speedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["structured"]:
        for entry in row["latency"]["batches"]:
            lines.append(
                f"| {row['ratio']} | {row['round_to']} | {row['widths']} | {entry['batch_size']} | "
                f"{1e3 * entry['dense']['median_s']:.3f} | {1e3 * entry['pruned']['median_s']:.3f}"
                f" | **{entry['speedup']:.2f}x** |"
            )
    nm = results["two_four"]
    lines += ["", "### 2:4 semi-structured kernels (fp16, 1024 tokens)", ""]
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
            lines.append(
                f"| {layer['name']} | {layer['shape']} | skipped: {layer['skipped']} | | |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; any device")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "bench/gpu.py: no CUDA device; use --smoke --device cpu to check the script",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    size = SIZES["smoke" if args.smoke else "full"]
    images = synthetic_task("images", size["image"], train=size["train"], val=size["val"])
    sequences = synthetic_task("sequences", size["sequence"], train=size["train"], val=size["val"])
    torch.manual_seed(0)
    cnn = build_builtin("cnn2d", input_shape=size["image"], num_classes=10, **size["cnn2d"])
    transformer = build_builtin(
        "transformer", input_shape=size["sequence"], num_classes=10, **size["transformer"]
    )
    results = {
        "overhead": [
            overhead("cnn2d", cnn, images, size=size, device=device),
            overhead("transformer", transformer, sequences, size=size, device=device),
        ],
        "structured": structured(cnn, images, size=size, device=device),
        "two_four": two_four(transformer, sequences, size=size, device=device),
    }
    text = render(results, device)
    print(text)
    if not args.no_write and not args.smoke:
        write_section("gpu", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
