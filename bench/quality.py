"""Accuracy vs sparsity: adaprune against common pruning baselines at equal fine-tuning budgets.

For each task and seed a dense model is trained once (Adam, lr 0.01, batch 100); every method then
starts from a copy of it and gets the same number of fine-tuning epochs (50 by default):

- oneshot-noft:   global magnitude, once, no fine-tuning
- oneshot-ft:     global magnitude once, then 30 epochs + 20 epochs cosine decay
- gmp:            gradual magnitude pruning, cubic schedule (Zhu & Gupta 2017), 10 x 3 + 20 epochs
- torch-l1:       torch.nn.utils.prune.global_unstructured(L1Unstructured), then 30 + 20 epochs
- tp-channel-50:  Torch-Pruning, 50 % of channels (group magnitude), then 30 + 20 epochs
- adaprune:       the adaptive task-aware criterion, distillation from the dense model, per-layer
                  floor, cubic schedule 10 x 3 + 20 epochs
- adaptive:       gmp's criterion and settings with the adaptive controller instead of the cubic
                  schedule: tolerance TOL on the validation split, steps of 3 epochs each
                  annealed (plus the recovery rounds it asks for), 20 final epochs plus the
                  nominal 10 x 3 step epochs it left unused, all within the same 50 epochs

gmp and adaptive also run with the tolerance TOL, which does not change gmp's path but gives its
highest sparsity within tolerance; the "schedules" table compares the two on every task and
sparsity: the adaptive schedule should end at least as sparse within tolerance as gmp, and within
one point of its test accuracy.

Test-split accuracy is reported as mean ± std over seeds. Writes the "quality" section of
docs/benchmarks.md and docs/quality.png.

    python bench/quality.py                      # full run (3 seeds, 4 sparsities, 3 tasks)
    python bench/quality.py --seeds 1 --tasks breast_cancer --sparsities 0.9   # a quick look
    python bench/quality.py --methods gmp adaptive   # only the schedules table (its own section)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, mean_std, source_digest, write_section
from core.data import TaskData, builtin_task
from core.finetune import cosine_lr, epoch_generator, evaluate, to_tensors, train_epoch
from core.loop import prune
from core.masks import (
    apply_masks,
    measured_sparsity,
    prunable_parameters,
    unstructured_masks,
)
from core.models import build_builtin
from core.registries import AUTO
from core.registries import CRITERIA as REGISTERED_CRITERIA
from core.spec import JobSpec

CPU = torch.device("cpu")
LR = 0.01
BATCH = 100
STEPS, EPOCHS_PER_STEP, FINAL = 10, 3, 20  # 50 fine-tuning epochs for every method
BUDGET = STEPS * EPOCHS_PER_STEP + FINAL
TOL = 0.02  # the tolerance of the schedules comparison (validation accuracy vs dense)


@dataclass(frozen=True)
class Task:
    name: str
    arch: str
    kwargs: dict[str, Any]
    dense_epochs: int


TASKS = {
    "mnist1d": Task("mnist1d", "cnn1d", {}, 150),
    "digits": Task("digits", "cnn2d", {"widths": [16, 32]}, 60),
    "breast_cancer": Task("breast_cancer", "mlp", {}, 150),
}


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor


def splits(data: TaskData) -> tuple[Split, Split, Split]:
    assert data.x_test is not None and data.y_test is not None
    return tuple(  # type: ignore[return-value]
        Split(*to_tensors(x, y, device=CPU))
        for x, y in (
            (data.x_train, data.y_train),
            (data.x_val, data.y_val),
            (data.x_test, data.y_test),
        )
    )


def fit(
    model: nn.Module,
    train: Split,
    *,
    seed: int,
    constant: int,
    cosine: int,
    masks: dict[str, torch.Tensor] | None = None,
) -> None:
    """`constant` epochs at LR, then `cosine` epochs decaying to 0 (the loop's own fine-tuning)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.0)
    params = prunable_parameters(model) if masks else None
    for epoch in range(constant + cosine):
        lr_at = None
        if epoch >= constant:
            lr_at = cosine_lr(base=LR, epoch=epoch - constant, epochs=cosine)
        train_epoch(
            model,
            x=train.x,
            y=train.y,
            optimizer=optimizer,
            batch_size=BATCH,
            generator=epoch_generator(seed=seed, epoch=1000 + epoch),
            masks=masks,
            params=params,
            lr_at=lr_at,
        )


def dense_model(task: Task, data: TaskData, train: Split, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_builtin(
        task.arch, input_shape=data.input_shape, num_classes=data.num_classes, **task.kwargs
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    for epoch in range(task.dense_epochs):
        train_epoch(
            model,
            x=train.x,
            y=train.y,
            optimizer=optimizer,
            batch_size=BATCH,
            generator=epoch_generator(seed=seed, epoch=epoch),
        )
    return model.eval()


def accuracy(model: nn.Module, split: Split) -> float:
    return evaluate(model, x=split.x, y=split.y).metric


def zeros(model: nn.Module) -> float:
    return measured_sparsity({k: v.detach() for k, v in prunable_parameters(model).items()})[0]


# ------------------------------------------------------------------------------------ methods
@dataclass(frozen=True)
class Pruned:
    """A method's model, its sparsity, and (for the engine's runs) the highest sparsity whose
    validation accuracy stayed within TOL of dense."""

    model: nn.Module
    reached: float
    within: float | None = None


Method = Callable[[nn.Module, TaskData, Split, float, int], Pruned]


def oneshot(
    model: nn.Module, data: TaskData, train: Split, sparsity: float, seed: int, *, finetune: bool
) -> Pruned:
    params = prunable_parameters(model)
    scores = {k: v.detach().abs() for k, v in params.items()}
    masks = unstructured_masks(scores, sparsity=sparsity, scope="global", min_density=0.0)
    apply_masks(params, masks)
    if finetune:
        fit(model, train, seed=seed, constant=STEPS * EPOCHS_PER_STEP, cosine=FINAL, masks=masks)
    return Pruned(model, zeros(model))


def torch_l1(model: nn.Module, data: TaskData, train: Split, sparsity: float, seed: int) -> Pruned:
    modules = [
        (m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))
    ]
    torch_prune.global_unstructured(
        modules, pruning_method=torch_prune.L1Unstructured, amount=sparsity
    )
    fit(model, train, seed=seed, constant=STEPS * EPOCHS_PER_STEP, cosine=FINAL)
    for module, name in modules:
        torch_prune.remove(module, name)
    return Pruned(model, zeros(model))


def tp_channel(
    model: nn.Module, data: TaskData, train: Split, sparsity: float, seed: int
) -> Pruned:
    example = train.x[:1]
    before = sum(p.numel() for p in model.parameters())
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=sparsity,
        ignored_layers=[last],
    )
    pruner.step()
    fit(model, train, seed=seed, constant=STEPS * EPOCHS_PER_STEP, cosine=FINAL)
    return Pruned(model, 1 - sum(p.numel() for p in model.parameters()) / before)


def adaprune_method(
    criterion: str,
    *,
    schedule: str = "cubic",
    distill: bool = True,
    floor: float = 0.02,
    tolerance: float = 1.0,
) -> Method:
    def run(model: nn.Module, data: TaskData, train: Split, sparsity: float, seed: int) -> Pruned:
        spec = JobSpec.model_validate(
            {
                "model": {"arch": "mlp"},
                "task": {"dataset": data.name},
                "seed": seed,
                "prune": {
                    "target_sparsity": sparsity,
                    "criterion": criterion,
                    "max_metric_drop": tolerance,
                    "schedule": {"kind": schedule, "steps": STEPS},
                    "min_layer_density": floor,
                },
                "finetune": {
                    "pretrain_epochs": 0,
                    "epochs_per_step": EPOCHS_PER_STEP,
                    "final_epochs": FINAL,
                    "lr": LR,
                    "batch_size": BATCH,
                    "distill": distill,
                },
                "budget": {"max_epochs": BUDGET},
            }
        )
        outcome = prune(model, data, spec, device=CPU)
        result = outcome.result
        return Pruned(outcome.model, result.sparsity, result.best_sparsity_within_tolerance)

    return run


METHODS: dict[str, Method] = {
    "oneshot-noft": lambda m, d, t, s, seed: oneshot(m, d, t, s, seed, finetune=False),
    "oneshot-ft": lambda m, d, t, s, seed: oneshot(m, d, t, s, seed, finetune=True),
    "gmp": adaprune_method("magnitude", distill=False, floor=0.0, tolerance=TOL),
    "adaptive": adaprune_method(
        "magnitude", schedule="adaptive", distill=False, floor=0.0, tolerance=TOL
    ),
    "torch-l1": torch_l1,
    "adaprune": adaprune_method("adaptive"),
}
CRITERIA = (*REGISTERED_CRITERIA, AUTO)


CACHE = ROOT / "bench" / ".cache" / "quality.jsonl"
# results are reused only while the protocol and the engine that produced them are unchanged
# (a change anywhere in core/ can move a run: the final fine-tuning's rules move gmp's too)
ENGINE = source_digest("core")
PROTOCOL = f"lr{LR}-b{BATCH}-{STEPS}x{EPOCHS_PER_STEP}+{FINAL}-tol{TOL}-core{ENGINE}"
Key = tuple[str, int, str, float]
Cached = tuple[float, float, float | None]  # test accuracy, sparsity, sparsity within TOL


def load_cache(path: Path) -> dict[Key, Cached]:
    found: dict[Key, Cached] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            item = json.loads(line)
            if item["protocol"] == PROTOCOL:
                key = (item["task"], item["seed"], item["method"], item["sparsity"])
                found[key] = (item["acc"], item["reached"], item.get("within"))
    return found


def remember(path: Path, key: Key, acc: float, reached: float, within: float | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    task, seed, method, sparsity = key
    record = {
        "protocol": PROTOCOL,
        "task": task,
        "seed": seed,
        "method": method,
        "sparsity": sparsity,
        "acc": acc,
        "reached": reached,
        "within": within,
    }
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    cache = {} if args.fresh else load_cache(CACHE)
    rows: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    measured: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    within: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    methods = {name: METHODS[name] for name in args.methods}
    dense_acc: dict[str, list[float]] = defaultdict(list)
    for task_name in args.tasks:
        task = TASKS[task_name]
        data = builtin_task(task_name)
        train, _, test = splits(data)
        for seed in range(args.seeds):
            jobs: list[tuple[str, Method, float]] = [
                (name, method, s) for s in args.sparsities for name, method in methods.items()
            ]
            if full_run(args):
                jobs.append(("tp-channel-50", tp_channel, 0.5))
            if task_name == "breast_cancer" and full_run(args):
                jobs += [(f"adaprune/{c}", adaprune_method(c), 0.95) for c in CRITERIA]
            dense: nn.Module | None = None
            dense_key = (task_name, seed, "dense", 0.0)
            if args.cached_only and dense_key not in cache:
                continue
            if not args.cached_only and (
                dense_key not in cache
                or any((task_name, seed, name, s) not in cache for name, _, s in jobs)
            ):
                start = time.perf_counter()
                dense = dense_model(task, data, train, seed)
                cache[dense_key] = (accuracy(dense, test), 0.0, None)
                remember(CACHE, dense_key, *cache[dense_key])
                print(
                    f"{task_name} seed {seed}: dense {cache[dense_key][0]:.4f} "
                    f"({time.perf_counter() - start:.0f}s)",
                    flush=True,
                )
            dense_acc[task_name].append(cache[dense_key][0])
            for name, method, sparsity in jobs:
                key = (task_name, seed, name, sparsity)
                if key not in cache and args.cached_only:
                    continue
                if key not in cache:
                    assert dense is not None
                    start = time.perf_counter()
                    torch.manual_seed(seed)
                    pruned = method(copy.deepcopy(dense), data, train, sparsity, seed)
                    cache[key] = (accuracy(pruned.model, test), pruned.reached, pruned.within)
                    remember(CACHE, key, *cache[key])
                    print(
                        f"  {name:<22} s={sparsity:.2f} acc {cache[key][0]:.4f} sparsity "
                        f"{pruned.reached:.4f} ({time.perf_counter() - start:.1f}s)",
                        flush=True,
                    )
                acc, reached, best = cache[key]
                rows[(task_name, name, sparsity)].append(acc)
                measured[(task_name, name, sparsity)].append(reached)
                if best is not None:
                    within[(task_name, name, sparsity)].append(best)
    return {"rows": rows, "measured": measured, "within": within, "dense": dense_acc}


def full_run(args: argparse.Namespace) -> bool:
    """Every method ran: the main table and its extras can be written."""
    return set(args.methods) == set(METHODS)


def render(results: dict[str, Any], args: argparse.Namespace) -> str:
    rows, measured, dense = results["rows"], results["measured"], results["dense"]
    lines = [
        "## Quality: accuracy vs sparsity (`bench/quality.py`)",
        "",
        f"Test accuracy, mean ± std over {args.seeds} seed(s); every method gets "
        f"{STEPS * EPOCHS_PER_STEP + FINAL} fine-tuning epochs after the same dense model "
        "(Adam lr 0.01, batch 100). Sparsity is counted from the weights (zeros among prunable "
        "weights; for channel pruning, the fraction of parameters removed). adaprune = the "
        "adaptive criterion, distillation from the dense model (weight 0.5, T = 2), per-layer "
        "floor 2 %, cubic schedule 10 x 3 + 20 epochs; the baselines are described in "
        "`bench/quality.py`. A cell whose mean sparsity fell short of its column's by more "
        "than half a point states it (the adaptive schedule stops within its 2-point "
        "tolerance; its own table is the next section).",
        "",
    ]
    for task_name in args.tasks:
        task = TASKS[task_name]
        d_mean, d_std = mean_std(dense[task_name])
        lines += [
            f"### {task_name} ({task.arch} {task.kwargs or ''}, dense {task.dense_epochs} "
            f"epochs): dense {100 * d_mean:.1f} ± {100 * d_std:.1f}",
            "",
            "| method | " + " | ".join(f"{100 * s:.0f} %" for s in args.sparsities) + " |",
            "|---|" + "---|" * len(args.sparsities),
        ]
        for name in METHODS:
            cells = []
            for s in args.sparsities:
                m, sd = mean_std(rows[(task_name, name, s)])
                reached, _ = mean_std(measured[(task_name, name, s)])
                # the adaptive schedule stops where the tolerance does: its sparsity is stated
                at = f" (at {100 * reached:.1f} %)" if reached < s - 0.005 else ""
                cells.append(f"{100 * m:.1f} ± {100 * sd:.1f}{at}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        m, sd = mean_std(rows[(task_name, "tp-channel-50", 0.5)])
        ms, _ = mean_std(measured[(task_name, "tp-channel-50", 0.5)])
        lines += [
            "",
            f"Torch-Pruning, 50 % of channels + fine-tune: {100 * m:.1f} ± {100 * sd:.1f} "
            f"({100 * ms:.1f} % of parameters removed).",
            "",
        ]
        if task_name == "breast_cancer":
            lines += [
                "adaprune at 95 % with each criterion (per-layer floor 2 %):",
                "",
                "| criterion | accuracy | min over seeds |",
                "|---|---|---|",
            ]
            for c in CRITERIA:
                values = rows[(task_name, f"adaprune/{c}", 0.95)]
                m, sd = mean_std(values)
                lines.append(f"| {c} | {100 * m:.1f} ± {100 * sd:.1f} | {100 * min(values):.1f} |")
            lines.append("")
    lines += targets(results, args)
    return "\n".join(lines)


def targets(results: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """The issue's quality targets, checked against this run's means."""
    rows, dense = results["rows"], results["dense"]
    checks: list[tuple[str, float, str, bool]] = []

    def mean(task: str, method: str, sparsity: float) -> float | None:
        values = rows.get((task, method, sparsity))
        return mean_std(values)[0] if values else None

    for sparsity, floor in ((0.9, 0.75), (0.95, 0.40)):
        value = mean("mnist1d", "adaprune", sparsity)
        if value is not None:
            checks.append(
                (f"mnist1d cnn1d at {sparsity:.0%}", value, f">= {floor:.0%}", value >= floor)
            )
    value = mean("digits", "adaprune", 0.9)
    if value is not None and dense.get("digits"):
        gap = mean_std(dense["digits"])[0] - value
        checks.append(
            ("digits cnn2d at 90 %: points below dense", 100 * gap / 100, "<= 1.0", gap <= 0.01)
        )
    for criterion in CRITERIA:
        value = mean("breast_cancer", f"adaprune/{criterion}", 0.95)
        if value is not None:
            checks.append((f"breast_cancer at 95 %, {criterion}", value, ">= 94 %", value >= 0.94))
    if not checks:
        return []
    lines = [
        "",
        "Targets (means over seeds):",
        "",
        "| target | measured | wanted | met |",
        "|---|---|---|---|",
    ]
    for label, value, wanted, met in checks:
        lines.append(f"| {label} | {100 * value:.1f} | {wanted} | {'yes' if met else '**no**'} |")
    trailing = [
        f"{task} at {s:.0%}: adaprune {100 * mean_std(rows[(task, 'adaprune', s)])[0]:.1f}, "
        f"{best} {100 * mean_std(rows[(task, best, s)])[0]:.1f}"
        for task in args.tasks
        for s in args.sparsities
        for best in [
            max(
                ("gmp", "oneshot-ft", "torch-l1"),
                key=lambda m, t=task, x=s: mean_std(rows[(t, m, x)])[0],
            )
        ]
        if mean_std(rows[(task, best, s)])[0] - mean_std(rows[(task, "adaprune", s)])[0] > 0.01
    ]
    if trailing:
        lines += [
            "",
            "Where adaprune trails the best baseline by more than a point: "
            + "; ".join(trailing)
            + ".",
        ]
    return lines


def render_schedules(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The adaptive controller against the cubic schedule at the same tolerance and epochs."""
    rows, measured, within = results["rows"], results["measured"], results["within"]
    lines = [
        "## Quality: adaptive schedule vs cubic GMP (`bench/quality.py`)",
        "",
        f"Magnitude pruning, no distillation, no per-layer floor, the same dense model and "
        f"{BUDGET} fine-tuning epochs for both; tolerance {100 * TOL:g} points of validation "
        "accuracy. gmp: cubic schedule 10 x 3 + 20 epochs (Zhu & Gupta 2017). adaptive: the "
        "adaptive controller (steps of 3 epochs, each ending annealed, plus the recovery rounds "
        "it asks for; each accepted step follows the cubic schedule re-planned from where the "
        "run is, smaller where the metric comes close to the tolerance; a miss that recovery "
        "leaves within one standard error of the tolerance is built on provisionally, the last "
        "model within tolerance held back; 20 final epochs plus the step epochs of the nominal "
        "10 x 3 it left unused; a run stopped short of its target climbs to it in its final "
        "fine-tuning and keeps that only within tolerance; all counted in the same budget). "
        "'within tol.' is, for both, "
        "the highest sparsity whose validation accuracy, measured by the engine after a step "
        "or after the final fine-tuning, stayed within the tolerance: the same split and the "
        "same rule (whole validation examples, `Run.within`), on the path for gmp, and on "
        "the steps within tolerance and the final model for adaptive (the model it returns is "
        "within tolerance); accuracy is on the test split, mean "
        "over the seeds in the row's last column. Met: adaptive within tol. >= gmp within tol. "
        "- 0.005 and "
        "adaptive test accuracy >= gmp's - 1 point.",
        "",
        "| task | target | gmp within tol. | gmp acc | adaptive sparsity | adaptive within tol. "
        "| adaptive acc | met | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for task_name in args.tasks:
        for sparsity in args.sparsities:
            key_g, key_a = (task_name, "gmp", sparsity), (task_name, "adaptive", sparsity)
            if not (within.get(key_g) and within.get(key_a)):
                continue
            # seeds run in order: the first n of each list are the seeds both methods finished
            n = min(len(within[key_g]), len(within[key_a]))
            g_within, a_within = mean_std(within[key_g][:n])[0], mean_std(within[key_a][:n])[0]
            g_acc, a_acc = mean_std(rows[key_g][:n])[0], mean_std(rows[key_a][:n])[0]
            met = a_within >= g_within - 0.005 and a_acc >= g_acc - 0.01
            verdicts.append(met)
            lines.append(
                f"| {task_name} | {100 * sparsity:.0f} % | {100 * g_within:.1f} % | "
                f"{100 * g_acc:.1f} | {100 * mean_std(measured[key_a][:n])[0]:.1f} % | "
                f"{100 * a_within:.1f} % | {100 * a_acc:.1f} | {'yes' if met else '**no**'} | "
                f"{n} |"
            )
    lines += ["", f"Met on {sum(verdicts)} of {len(verdicts)} task/sparsity pairs."]
    return "\n".join(lines)


def plot(results: dict[str, Any], args: argparse.Namespace, path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5 * len(args.tasks), 4), layout="constrained")
    axes = figure.subplots(1, len(args.tasks), squeeze=False)[0]
    for axis, task_name in zip(axes, args.tasks, strict=True):
        for name in METHODS:
            means = [mean_std(results["rows"][(task_name, name, s)]) for s in args.sparsities]
            axis.errorbar(
                [100 * s for s in args.sparsities],
                [100 * m for m, _ in means],
                yerr=[100 * sd for _, sd in means],
                marker="o",
                capsize=3,
                label=name,
            )
        d_mean, _ = mean_std(results["dense"][task_name])
        axis.axhline(100 * d_mean, color="black", linestyle="--", label="dense")
        axis.set_title(task_name)
        axis.set_xlabel("sparsity (%)")
        axis.set_ylabel("test accuracy (%)")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--sparsities", nargs="+", type=float, default=[0.5, 0.7, 0.9, 0.95])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch docs/")
    parser.add_argument("--fresh", action="store_true", help=f"ignore results cached in {CACHE}")
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="render only what the cache holds (runs that did not finish are left out)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=list(METHODS),
        help="run only these (the main table is written only when all run)",
    )
    args = parser.parse_args()
    results = run(args)
    schedules = render_schedules(results, args)
    print(schedules)
    if full_run(args):
        text = render(results, args)
        print(text)
    if not args.no_write:
        if full_run(args):
            plot(results, args, ROOT / "docs" / "quality.png")
            write_section("quality", text + "\n\n![accuracy vs sparsity](quality.png)")
        if {"gmp", "adaptive"} <= set(args.methods):
            write_section("quality-schedules", schedules)


if __name__ == "__main__":
    main()
