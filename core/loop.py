"""prune(): the adaptive score -> mask -> fine-tune loop, with per-step checkpoints and resume.

1. Baseline: train the dense model when no weights were given, evaluate it, checkpoint step 0.
2. Score every prunable weight with the job's criterion ("auto" probes the candidates first).
3. Mask (or remove channels) at the sparsity the schedule or the adaptive controller asks for.
4. Fine-tune with the masks enforced after every optimizer step; evaluate on validation.
5. Decide: a fixed schedule moves on; the adaptive controller accelerates, keeps, shrinks,
   builds provisionally on a step past tolerance by less than the validation noise (holding
   back the last model within it), or rolls back to the state before the step. Checkpoint,
   report, repeat.
6. Final fine-tuning at the accepted sparsity, with a cosine learning-rate decay (an adaptive
   run also spends there the epochs of its nominal steps x epochs_per_step it left unused; one
   that stopped short of its target climbs to it on a ramp first and keeps that only within
   tolerance, else returns its last accepted model as it was accepted; one that ends past
   tolerance on provisional steps returns the last model within it).
Every source of randomness is derived from (seed, epoch counter), so a run resumed from any
checkpoint ends with the same weights as an uninterrupted one.

The run's context lives in `core.run`, its serialisable state in `core.run_state`, planning in
`core.planning`, the step in `core.step` and the final push in `core.push`; this module holds
the two end phases and `prune()`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from core.checkpoint import unshared
from core.controller import AdaptiveController, standard_error
from core.data import TaskData
from core.errors import TrainingDiverged
from core.finetune import cosine_lr
from core.granularity import count_params
from core.outcome import accepted_curve, missed_reason
from core.planning import plan_layers
from core.push import built_on, push_target, ramp_to
from core.recovery import unspent_step_epochs
from core.registries import SCHEDULES
from core.report import Decision, PruneResult, StepCallback
from core.run import DENSE_WEIGHTS, CheckpointCallback, PhaseCallback, Run
from core.spec import JobSpec
from core.step import prune_step

__all__ = ["CheckpointCallback", "PhaseCallback", "PruneOutcome", "prune"]


@dataclass
class PruneOutcome:
    result: PruneResult
    model: nn.Module
    dense_model: nn.Module
    masks: dict[str, Tensor]
    # what the artifact's manifest records under "extra" (the one-shot path's per-block figures)
    details: dict[str, Any] = field(default_factory=dict)


def baseline(run: Run, *, pretrain: bool) -> None:
    """Train the dense model if asked, evaluate it, plan the run and checkpoint step 0."""
    run.phase("baseline")
    run.check()
    start = time.perf_counter()
    finetune = run.spec.finetune
    state = run.state
    loss = math.nan
    if pretrain and finetune.pretrain_epochs > 0:
        lr = finetune.pretrain_lr or finetune.lr
        run.optimizer = run.new_optimizer(lr)
        epochs = finetune.pretrain_epochs
        loss = run.train(
            epochs,
            lr_at=lambda i: cosine_lr(base=lr, epoch=i, epochs=epochs),
            count=False,
        )
    run.check()
    state.dense_metric, val_loss = run.evaluate()
    if not math.isfinite(val_loss):
        # Finite weights can still overflow (3e38 in every weight): no step can be measured.
        raise TrainingDiverged(
            f"the dense model's validation loss is {val_loss}: its weights or the task data "
            "give non-finite outputs"
        )
    run.dense_model = run.frozen_copy(run.model)
    state.plan.dense_params = count_params(run.model)
    if run.checkpoint_dir is not None:
        run.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        save_file(unshared(run.model.state_dict()), str(run.checkpoint_dir / DENSE_WEIGHTS))
    run.check()
    plan_layers(run)
    run.check()
    run.optimizer = run.new_optimizer(finetune.lr)
    if SCHEDULES.info(run.spec.prune.schedule.kind)["adaptive"]:
        state.controller = AdaptiveController.initial_state(
            target=state.target,
            steps=run.spec.prune.schedule.steps,
            search_max=run.spec.prune.search_max,
        )
        state.next_target = run.controller.first_sparsity(state.controller)
    run.report(
        target=0.0,
        metric=state.dense_metric,
        loss=val_loss if math.isnan(loss) else loss,
        decision="baseline",
        seconds=time.perf_counter() - start,
        epochs=0,
        phases={},
    )
    run.checkpoint()


def final_lost(
    *, drop: float, start_drop: float, within: bool, start_within: bool, noise: float
) -> bool:
    """Whether the final fine-tuning cost the model it started from, which then comes back: it
    ended past the tolerance that model kept, or worse by more than `noise`, the validation
    split's noise (one binomial standard error, `core.controller.standard_error`, for a metric
    counted in examples; 0 otherwise). Smaller differences are noise: keeping the start model
    on them would throw away many epochs of fine-tuning on a coin flip."""
    if start_within and not within:
        return True
    return drop > start_drop + noise + 1e-12


def _final_lost(run: Run, metric: float, start_metric: float) -> bool:
    examples = run.counted_examples()
    return final_lost(
        drop=run.drop(metric),
        start_drop=run.drop(start_metric),
        within=run.within(metric),
        start_within=run.within(start_metric),
        noise=standard_error(start_metric, examples) if examples else 0.0,
    )


def _training_seconds(start: float, phases: dict[str, float]) -> float:
    """Seconds since `start` less those a push's cuts already count as scoring and masking."""
    cuts = sum(seconds for name, seconds in phases.items() if name != "finetuning")
    return time.perf_counter() - start - cuts


def _row(
    run: Run,
    decision: Decision,
    *,
    target: float,
    metric: float,
    loss: float,
    start: float,
    phases: dict[str, float],
    epochs: int,
) -> None:
    """Report a row of the final phase (a rolled-back push or end, or the final row) as its
    own step, timed from `start`."""
    run.state.counters.step += 1
    phases["finetuning"] = _training_seconds(start, phases)
    run.report(
        target=target,
        metric=metric,
        loss=loss,
        decision=decision,
        seconds=time.perf_counter() - start,
        epochs=epochs,
        phases=phases,
    )


def final(run: Run) -> None:
    """Fine-tune at the accepted sparsity with a cosine decay, report and checkpoint.

    An adaptive run that stopped short of its target climbs to it during the first half of
    these epochs (`core.push`) and keeps the result only when it ends
    within tolerance: a failed push is reported as a rolled-back step and the model returns
    to the last accepted one. A run built on provisional steps (`core.controller`) that ends
    past tolerance is reported the same way and returns the last model within tolerance.
    """
    start = time.perf_counter()
    run.phase("finetuning")
    run.check()
    finetune = run.spec.finetune
    state = run.state
    epochs = finetune.final_epochs
    if SCHEDULES.info(run.spec.prune.schedule.kind)["adaptive"]:
        epochs += unspent_step_epochs(run)
    epochs = min(epochs, run.spec.budget.max_epochs - state.counters.finetune_epochs)
    loss = math.nan
    trained = 0
    target = built_on(run)
    phases: dict[str, float] = {}
    metric, val_loss = run.evaluate()
    if epochs > 0 and state.stop_reason != "max_runtime":
        # the final fine-tuning is there to recover: when it costs the accepted step's metric
        # (`final_lost`) the weights it started from come back
        start_metric, start_loss, snapshot = metric, val_loss, run.snapshot()
        push = push_target(run)
        run.optimizer = run.new_optimizer(finetune.lr)
        before = state.counters.finetune_epochs
        ramped = False
        if push is None:
            loss = run.train(
                epochs, lr_at=lambda i: cosine_lr(base=finetune.lr, epoch=i, epochs=epochs)
            )
        else:
            loss, ramped = ramp_to(run, target, push, epochs=epochs, phases=phases)
        trained = state.counters.finetune_epochs - before
        metric, val_loss = run.evaluate()
        diverged = not math.isfinite(val_loss)
        if push is not None and ramped and run.within(metric) and not diverged:
            target = push
            state.stop_reason = "target_reached"
        elif push is not None:
            _row(
                run,
                "rollback",
                target=push,
                metric=metric,
                loss=loss,
                start=start,
                phases=phases,
                epochs=trained,
            )
            start, phases, trained = time.perf_counter(), {}, 0
            run.load_snapshot(snapshot)
            metric, val_loss, loss = start_metric, start_loss, math.nan
        elif diverged or _final_lost(run, metric, start_metric):
            run.load_snapshot(snapshot)
            metric, val_loss, loss = start_metric, start_loss, math.nan
    if run.fallback is not None and run.within(metric):
        run.release_fallback()
    elif run.fallback is not None:
        # the run ends past tolerance on provisional steps: that is reported as a rolled-back
        # step, and the last model within tolerance is what the run returns
        _row(
            run,
            "rollback",
            target=target,
            metric=metric,
            loss=val_loss if math.isnan(loss) else loss,
            start=start,
            phases=phases,
            epochs=trained,
        )
        start, phases, trained = time.perf_counter(), {}, 0
        target = run.load_fallback()
        metric, val_loss = run.evaluate()
        loss = math.nan
        if state.stop_reason == "target_reached":
            state.stop_reason = "no_headroom"
    _row(
        run,
        "final",
        target=target,  # what the model was asked for: built on, reached by a push, held back
        metric=metric,
        loss=val_loss if math.isnan(loss) else loss,
        start=start,
        phases=phases,
        epochs=trained,  # what ran, not what was planned (none after max_runtime)
    )
    state.finished = True
    run.checkpoint()


def result(run: Run) -> PruneResult:
    """The run's outcome, from its reports and the model as it is now."""
    state = run.state
    last = state.reports[-1]
    _, per_layer = run.granularity.count(run.model, plan=state.plan)
    described = run.granularity.describe(run.model, plan=state.plan)
    stop_reason = state.stop_reason or "schedule_done"
    reason = missed_reason(
        state.reports,
        spec=run.spec,
        target=state.target,
        stop_reason=stop_reason,
        dense_metric=state.dense_metric,
        within=run.within(last.metric),
    )
    return PruneResult(
        criterion=state.criterion,
        dense_metric=state.dense_metric,
        metric=last.metric,
        sparsity=last.sparsity,
        best_sparsity_within_tolerance=state.best_within,
        within_tolerance=run.within(last.metric),
        stop_reason=stop_reason,
        epochs=state.counters.finetune_epochs,
        seconds=run.elapsed(),
        steps=list(state.reports),
        probe=dict(state.probe),
        layer_sparsity=per_layer,
        skipped_layers=described["skipped_layers"],
        target_sparsity=state.target,
        target_reached=reason is None,
        target_missed_reason=reason,
        curve=accepted_curve(state.reports),
    )


def prune(
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
    """Run the adaptive pruning loop of `spec` on `model` for the task `data`.

    Args:
        model: the dense model, freshly built; trained first unless the spec names a trained model.
        data: the task's splits; validation decides, test is left to the caller.
        spec: the job spec (pruning method, fine-tuning, budget, seed).
        device: where to run; masks and scores stay there.
        checkpoint_dir: a checkpoint is written there after every step (None: no checkpoints).
        resume: continue from the newest checkpoint in `checkpoint_dir` when there is one.
        on_step: receives every StepReport as it happens (not the replayed ones on resume).
        on_phase: receives "baseline", "scoring", "finetuning" as the run moves through them.
        on_checkpoint: receives each checkpoint directory after it is complete.
        should_stop: polled between batches; True raises PruneCancelled.

    Returns:
        The pruned model (masks applied), the dense model and the PruneResult.
    """
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir")
    torch.manual_seed(spec.seed)
    run = Run(
        model,
        data,
        spec,
        device=torch.device(device),
        checkpoint_dir=checkpoint_dir,
        on_step=on_step,
        on_phase=on_phase,
        on_checkpoint=on_checkpoint,
        should_stop=should_stop,
    )
    if not (resume and run.restore()):
        baseline(run, pretrain=not spec.model.pretrained)
    while not run.state.finished and run.state.stop_reason is None and prune_step(run):
        pass
    if not run.state.finished:
        final(run)
    run.model.eval()
    return PruneOutcome(
        result=result(run), model=run.model, dense_model=run.dense_model, masks=run.masks
    )
