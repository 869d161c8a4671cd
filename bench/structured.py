"""Structured (channel) pruning speed: measured latency of dense vs channel-pruned cnn2d.

A cnn2d (small ResNet, widths 32/64) is trained on digits, then adaprune removes channels with
the job loop (granularity "channel", widths rounded to `round_to`), and the dense and pruned
models are timed in this process, interleaved, at batch sizes 1, 64 and 256. The speedup is the
ratio of medians measured in the same run. Writes the "structured" section of docs/benchmarks.md.

    python bench/structured.py
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from core.data import builtin_task
from core.finetune import evaluate, to_tensors
from core.latency import batch_of, measure_latency
from core.loop import prune
from core.models import build_builtin
from core.spec import JobSpec
from core.structured import count_macs_params

CPU = torch.device("cpu")
BATCHES = (1, 64, 256)


def channel_spec(*, ratio: float, round_to: int, pretrain: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "model": {"arch": "cnn2d"},
            "task": {"dataset": "digits"},
            "prune": {
                "target_sparsity": ratio,
                "granularity": "channel",
                "criterion": "adaptive",
                "round_to": round_to,
                "max_metric_drop": 1.0,
                "schedule": {"kind": "cubic", "steps": 3},
            },
            "finetune": {
                "pretrain_epochs": pretrain,
                "epochs_per_step": 2,
                "final_epochs": 4,
                "lr": 0.005,
                "batch_size": 100,
            },
        }
    )


def interleaved(
    dense: nn.Module, pruned: nn.Module, inputs: torch.Tensor, rounds: int
) -> tuple[float, float]:
    dense_times, pruned_times = [], []
    for _ in range(rounds):
        dense_times.append(measure_latency(dense, example_inputs=inputs, repeats=10)["median_s"])
        pruned_times.append(measure_latency(pruned, example_inputs=inputs, repeats=10)["median_s"])
    return statistics.median(dense_times), statistics.median(pruned_times)


def widths(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pretrain", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = builtin_task("digits")
    x_test, y_test = to_tensors(data.x_test, data.y_test, device=CPU)
    example = torch.as_tensor(data.x_val[:1])
    lines = [
        "## Structured pruning speed (`bench/structured.py`)",
        "",
        "digits, cnn2d (ResNet-style, widths 32/64), channels removed by the job loop (adaptive",
        "criterion, cubic schedule, 3 steps, fine-tuned), widths rounded up to `round_to`. CPU",
        f"latency: median of {args.rounds} interleaved rounds of 10 timed forwards each.",
        "Target: 50 % channel pruning gives at least 1.5x measured CPU speedup.",
        "",
        "| channel ratio | round_to | conv widths | params | MACs | test acc | batch | dense ms"
        " | pruned ms | speedup |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    torch.manual_seed(0)
    base = build_builtin("cnn2d", input_shape=data.input_shape, num_classes=data.num_classes)
    dense_macs, dense_params = count_macs_params(base, example_inputs=example)
    for ratio, round_to in ((0.5, 8), (0.45, 8), (0.45, 1)):
        spec = channel_spec(ratio=ratio, round_to=round_to, pretrain=args.pretrain)
        outcome = prune(copy.deepcopy(base), data, spec.model_copy(update={"seed": 0}), device=CPU)
        pruned, dense = outcome.model.eval(), outcome.dense_model.eval()
        macs, params = count_macs_params(pruned, example_inputs=example)
        accuracy = evaluate(pruned, x=x_test, y=y_test).metric
        for batch in BATCHES:
            inputs = batch_of(data.x_val, batch_size=batch, device=CPU)
            dense_s, pruned_s = interleaved(dense, pruned, inputs, args.rounds)
            lines.append(
                f"| {ratio} | {round_to} | {widths(pruned)} | {params:,} / {dense_params:,} | "
                f"{macs / 1e6:.2f}M / {dense_macs / 1e6:.2f}M | {100 * accuracy:.1f} | {batch} | "
                f"{1e3 * dense_s:.3f} | {1e3 * pruned_s:.3f} | **{dense_s / pruned_s:.2f}x** |"
            )
            print(lines[-1], flush=True)
    lines += [
        "",
        f"Dense widths: {widths(base)}; dense pre-training {args.pretrain} epochs.",
    ]
    text = "\n".join(lines)
    print(text)
    write_section("structured", text)


if __name__ == "__main__":
    main()
