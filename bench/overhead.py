"""Loop overhead: wall time of a pruning job / plain dense training for the same epochs.

Both run in this process, interleaved, `--repeats` times each; the ratio of medians is reported.
The pruning job is the real thing: scoring on calibration batches, masking, fine-tuning with masks
enforced, evaluation, the adaptive controller and a checkpoint after every step. Writes the
"overhead" section of docs/benchmarks.md.

    python bench/overhead.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from core.data import builtin_task
from core.finetune import epoch_generator, to_tensors, train_epoch
from core.loop import prune
from core.models import build_builtin
from core.spec import JobSpec

CPU = torch.device("cpu")


def job_spec(
    *, criterion: str, schedule: str, distill: bool, steps: int, per_step: int, final: int
) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "cnn1d"},
            "task": {"dataset": "mnist1d"},
            "prune": {
                "target_sparsity": 0.9,
                "criterion": criterion,
                "max_metric_drop": 1.0,
                "schedule": {"kind": schedule, "steps": steps},
            },
            "finetune": {
                "pretrain_epochs": 0,
                "epochs_per_step": per_step,
                "final_epochs": final,
                "lr": 0.01,
                "batch_size": 100,
                "distill": distill,
            },
        }
    )


def dense_training(
    model: torch.nn.Module, *, epochs: int, x: torch.Tensor, y: torch.Tensor
) -> float:
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.0)
    for epoch in range(epochs):
        train_epoch(
            model,
            x=x,
            y=y,
            optimizer=optimizer,
            batch_size=100,
            generator=epoch_generator(seed=0, epoch=epoch),
        )
    return time.perf_counter() - start


def pruning_job(model: torch.nn.Module, spec: JobSpec, data) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        outcome = prune(model, data, spec, device=CPU, checkpoint_dir=Path(work))
        return time.perf_counter() - start, outcome.result.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = builtin_task("mnist1d")
    x, y = to_tensors(data.x_train, data.y_train, device=CPU)
    torch.manual_seed(0)
    base = build_builtin("cnn1d", input_shape=data.input_shape, num_classes=data.num_classes)
    configs = {
        "adaptive criterion, cubic 10 x 3 + 20": job_spec(
            criterion="adaptive", schedule="cubic", distill=False, steps=10, per_step=3, final=20
        ),
        "adaptive criterion, adaptive schedule, 10 x 3 + 20": job_spec(
            criterion="adaptive", schedule="adaptive", distill=False, steps=10, per_step=3, final=20
        ),
        "magnitude, cubic 10 x 3 + 20": job_spec(
            criterion="magnitude", schedule="cubic", distill=False, steps=10, per_step=3, final=20
        ),
        "adaptive criterion + distillation, cubic 10 x 3 + 20": job_spec(
            criterion="adaptive", schedule="cubic", distill=True, steps=10, per_step=3, final=20
        ),
    }
    rows = []
    for name, spec in configs.items():
        dense_times, job_times, epochs = [], [], 0
        for _ in range(args.repeats):
            job_time, epochs = pruning_job(copy.deepcopy(base), spec, data)
            job_times.append(job_time)
            dense_times.append(dense_training(copy.deepcopy(base), epochs=epochs, x=x, y=y))
        ratio = statistics.median(job_times) / statistics.median(dense_times)
        rows.append(
            (name, epochs, statistics.median(dense_times), statistics.median(job_times), ratio)
        )
        print(f"{name}: {ratio:.3f}", flush=True)
    lines = [
        "## Loop overhead (`bench/overhead.py`)",
        "",
        "mnist1d, cnn1d (5.2k parameters), 90 % target, CPU. A pruning job (scoring, masking,"
        " masked fine-tuning, evaluation each step, controller, a checkpoint per step) against"
        f" plain dense training for the same number of epochs; medians of {args.repeats}"
        " interleaved runs. Target: at most 1.25 on CPU for a job without distillation"
        " (distillation is opt-in and adds a teacher forward pass to every batch).",
        "",
        "| job | epochs | dense training (s) | pruning job (s) | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {n} | {e} | {d:.2f} | {j:.2f} | **{r:.3f}** |" for n, e, d, j, r in rows]
    text = "\n".join(lines)
    print(text)
    write_section("overhead", text)


if __name__ == "__main__":
    main()
