"""run_oneshot(): a job whose spec sets `prune.method`, from the dense model to its outcome.

1. Baseline: the dense model's validation metric (the tolerance is measured against it).
2. `prune_oneshot` on `calibration_samples` training sequences, block by block, with the job's
   checkpoint directory (a resumed job starts at the block after the last saved one). Each
   block gives one step: the model's sparsity and validation metric with the blocks so far
   pruned, and the block's output reconstruction error as the loss.
3. Optional recovery: `finetune.final_epochs` of masked fine-tuning (kept only if it helps).
4. The outcome: whether the target was reached within `max_metric_drop` (relative for
   perplexity, in the metric's direction), and why not, in words.

It returns the same `PruneOutcome` as the iterative loop, so `core.job.run_job` exports either
the same way.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from core.contract.layout import ONESHOT_DIR, ONESHOT_PROGRESS
from core.data import TaskData
from core.errors import PruneCancelled, SpecInvalid
from core.finetune import evaluate, to_tensors
from core.hf.adapter import HFAdapter
from core.loop import CheckpointCallback, PhaseCallback, PruneOutcome
from core.metrics import make_metric
from core.oneshot.blocks import find_blocks, prunable_layers, weight_matrix
from core.oneshot.config import OneShotConfig
from core.oneshot.engine import prune_oneshot
from core.oneshot.outcome import Tolerance, oneshot_details, oneshot_result
from core.oneshot.recovery import recover
from core.report import StepCallback, StepReport
from core.spec import JobSpec


def calibration_batches(data: TaskData, *, samples: int, batch_size: int, seed: int) -> list[Any]:
    """`samples` training sequences (a seeded choice, the same on every run) as model inputs,
    in batches of `batch_size`, each cut to its longest real sequence."""
    count = min(samples, data.x_train.shape[0])
    chosen = np.sort(np.random.default_rng(seed).permutation(data.x_train.shape[0])[:count])
    packed = torch.from_numpy(np.ascontiguousarray(data.x_train[chosen]))
    batches: list[Any] = []
    for start in range(0, count, batch_size):
        ids, mask = packed[start : start + batch_size, 0], packed[start : start + batch_size, 1]
        length = max(1, int(mask.sum(dim=1).max()))
        batches.append({"input_ids": ids[:, :length], "attention_mask": mask[:, :length]})
    return batches


def _saved_steps(checkpoint_dir: Path | None) -> list[StepReport]:
    """The per-block reports a previous attempt saved (the engine checks they belong here)."""
    if checkpoint_dir is None:
        return []
    path = checkpoint_dir / ONESHOT_DIR / ONESHOT_PROGRESS
    try:
        saved = json.loads(path.read_text())["steps"]
        return [
            StepReport.model_validate(
                {k: float("nan") if v is None else v for k, v in step.items()}
            )
            for step in saved
        ]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # nothing usable: the engine starts over or refuses the file itself


def model_steps(per_block: Sequence[StepReport], sizes: Sequence[int]) -> list[StepReport]:
    """The engine's per-block reports turned into the model's: after block k, the sparsity
    (target and measured) of the blocks' prunable weights over all blocks, so that the series
    climbs block by block to the job's target."""
    total = max(1, sum(sizes))
    zeros, target = 0.0, 0.0
    steps = []
    for step in per_block:
        size = sizes[step.step - 1]
        zeros += step.sparsity * size
        target += step.target_sparsity * size
        steps.append(
            step.model_copy(
                update={"sparsity": zeros / total, "target_sparsity": round(target / total, 6)}
            )
        )
    return steps


def _masks(blocks_path: str, blocks: nn.ModuleList) -> dict[str, Tensor]:
    """The zero pattern of the blocks' prunable weights, by parameter name."""
    masks = {}
    for index, block in enumerate(blocks):
        for name, layer in prunable_layers(block).items():
            key = f"hf.{blocks_path}.{index}.{name}.weight"
            weight = layer.weight
            if isinstance(weight, Tensor):  # in the parameter's own layout (GPT-2's is (in, out))
                masks[key] = weight.detach() != 0
    return masks


def run_oneshot(
    model: nn.Module,
    data: TaskData,
    spec: JobSpec,
    *,
    device: str | torch.device = "cpu",
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    on_step: StepCallback | None = None,
    on_phase: PhaseCallback | None = None,
    on_checkpoint: CheckpointCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PruneOutcome:
    """Prune `model` one-shot, block by block, as `spec.prune` asks (see the module docstring).

    The arguments are `core.loop.prune`'s. The model stays where it was loaded (the CPU);
    each block in turn goes to `device` with its calibration activations. `on_checkpoint`
    receives `checkpoint_dir/oneshot` after each block's checkpoint; `should_stop` is polled
    before every block and between fine-tuning batches, and `budget.max_runtime_s` ends the
    run before the next block once spent (the result says so).

    Raises:
        SpecInvalid: the model is not a Hugging Face model built of repeated blocks.
        PruneCancelled: `should_stop` returned True.
        CheckpointInvalid: the checkpoint belongs to a run with other settings or data.
    """
    if not isinstance(model, HFAdapter):
        raise SpecInvalid(
            f"prune.method {spec.prune.method!r} needs a Hugging Face model (model.hf)"
        )
    begun = time.perf_counter()
    target_device = torch.device(device)
    if checkpoint_dir is not None and not resume:
        shutil.rmtree(checkpoint_dir / ONESHOT_DIR, ignore_errors=True)
    saved = _saved_steps(checkpoint_dir)
    spent_before = sum(step.seconds for step in saved if math.isfinite(step.seconds))

    def elapsed() -> float:
        return spent_before + time.perf_counter() - begun

    def out_of_time() -> bool:
        return elapsed() >= spec.budget.max_runtime_s

    def phase(name: str) -> None:
        if on_phase is not None:
            on_phase(name)

    def check() -> None:
        if should_stop is not None and should_stop():
            raise PruneCancelled("stop requested")

    phase("baseline")
    check()
    try:
        blocks_path, blocks = find_blocks(model.hf)
    except ValueError as error:
        raise SpecInvalid(f"prune.method: {error}") from error
    metric = make_metric(spec.task.metric)
    x_val, y_val = to_tensors(data.x_val, data.y_val, device=torch.device("cpu"))
    model.cpu()

    def validation(_: nn.Module | None = None) -> float:
        check()
        return evaluate(model, x=x_val, y=y_val, metric=metric).metric

    tolerance = Tolerance(spec, metric, validation(), examples=len(data.y_val))
    dense = copy.deepcopy(model).eval()
    for parameter in dense.parameters():
        parameter.requires_grad_(False)
    sizes = [sum(weight_matrix(m).numel() for m in prunable_layers(b).values()) for b in blocks]
    config = OneShotConfig.from_spec(spec.prune)
    calibration = calibration_batches(
        data,
        samples=spec.prune.calibration_samples,
        batch_size=spec.finetune.batch_size,
        seed=spec.seed,
    )
    per_block = list(saved)

    def block_done(step: StepReport) -> None:
        per_block.append(step)
        if on_step is not None:
            on_step(model_steps(per_block, sizes)[-1])
        if on_checkpoint is not None and checkpoint_dir is not None:
            on_checkpoint(checkpoint_dir / ONESHOT_DIR)

    phase("scoring")
    with torch.no_grad():
        found = prune_oneshot(
            model.hf,
            calibration,
            config,
            device=target_device,
            checkpoint_dir=checkpoint_dir,
            on_step=block_done,
            should_stop=should_stop,
            evaluate=validation,
            out_of_time=out_of_time,
        )
    model.eval()
    steps = model_steps(found.steps, sizes)
    metric_value = steps[-1].metric if steps else tolerance.dense
    masks = _masks(blocks_path, blocks)
    epochs = 0
    if spec.finetune.final_epochs > 0 and found.stopped_at is None and not out_of_time():
        phase("finetuning")
        started = time.perf_counter()
        metric_value, loss, epochs = recover(
            model,
            data,
            spec,
            masks=masks,
            dense=dense,
            device=target_device,
            tolerance=tolerance,
            start_metric=metric_value,
            should_stop=should_stop,
            out_of_time=out_of_time,
        )
        final = StepReport(
            step=len(steps) + 1,
            target_sparsity=steps[-1].target_sparsity if steps else 0.0,
            sparsity=steps[-1].sparsity if steps else 0.0,
            metric=metric_value,
            loss=loss,
            decision="final",
            seconds=time.perf_counter() - started,
            epochs=epochs,
            phase_seconds={"finetuning": time.perf_counter() - started},
        )
        steps.append(final)
        if on_step is not None:
            on_step(final)
    model.eval()
    return PruneOutcome(
        result=oneshot_result(
            spec,
            found=found,
            steps=steps,
            tolerance=tolerance,
            metric=metric_value,
            epochs=epochs,
            seconds=elapsed(),
            model=model,
        ),
        model=model,
        dense_model=dense,
        masks=masks,
        details={"oneshot": oneshot_details(found)},
    )
