"""One pruning step: score, sparsify, fine-tune, evaluate, decide; then report and checkpoint."""

from __future__ import annotations

import math
import time

from core.errors import TrainingDiverged
from core.pretrained import reestimate_batchnorm, step_lr
from core.recovery import judge, step_budget_spent
from core.registries import SCHEDULES
from core.report import Decision
from core.run import Run
from core.schedule import fixed_schedule


def step_limit(run: Run) -> int:
    """The most pruning steps the schedule allows (adaptive: three times its nominal steps)."""
    schedule = run.spec.prune.schedule
    max_steps: int = SCHEDULES.info(schedule.kind)["max_steps"](schedule.steps)
    return max_steps


def target_for(run: Run, step: int) -> float:
    """The sparsity step `step` prunes to: the controller's proposal or the fixed schedule's."""
    schedule = run.spec.prune.schedule
    if SCHEDULES.info(schedule.kind)["adaptive"]:
        return run.state.next_target
    return fixed_schedule(schedule.kind, final=run.state.target, steps=schedule.steps)(step)


def cut(run: Run, target: float) -> dict[str, float]:
    """Score the model with the job's criterion and sparsify it to `target`; return the
    seconds of the scoring and masking phases."""
    start = time.perf_counter()
    run.phase("scoring")
    run.check()
    scores = run.importance()(run.scoring_context())
    phases = {"scoring": time.perf_counter() - start}
    mark = time.perf_counter()
    run.masks = run.granularity.sparsify(
        run.model,
        scores=scores,
        target=target,
        spec=run.spec.prune,
        masks=run.masks,
        plan=run.state.plan,
        example_inputs=run.example,
    )
    del scores
    if run.granularity.changes_shapes:
        run.optimizer = run.new_optimizer(run.spec.finetune.lr)
    if run.spec.finetune.bn_recalibration:  # the cut shifted the activations BN normalises
        reestimate_batchnorm(run.model, (xb for xb, _ in run.scoring_context().batches))
    phases["masking"] = time.perf_counter() - mark
    return phases


def prune_step(run: Run) -> bool:
    """Take one step; return False when the pruning phase is over."""
    prune_spec = run.spec.prune
    state = run.state
    adaptive: bool = SCHEDULES.info(prune_spec.schedule.kind)["adaptive"]
    limit = step_limit(run)
    if state.counters.step >= limit:
        state.stop_reason = "step_limit" if adaptive else "schedule_done"
        return False
    reason = run.budget_left() or (step_budget_spent(run) if adaptive else None)
    if reason is not None:
        state.stop_reason = reason
        return False
    state.counters.step += 1
    target = target_for(run, state.counters.step)
    phases: dict[str, float] = {}
    start = time.perf_counter()
    snapshot = run.snapshot() if adaptive else None

    phases.update(cut(run, target))
    run.check()
    run.phase("finetuning")
    mark = time.perf_counter()
    epochs_before = state.counters.finetune_epochs
    finetune = run.spec.finetune
    # the controller judges the step on its metric: an adaptive step ends annealed, so that
    # what it measures is the recovered metric, not the noise of training at the base rate
    lr_at = step_lr(
        base=finetune.lr,
        warmup_fraction=finetune.warmup_fraction,
        decay_epochs=finetune.epochs_per_step if adaptive else 0,
    )
    loss = run.train(finetune.epochs_per_step, lr_at=lr_at)
    if adaptive:
        assert run.optimizer is not None
        for group in run.optimizer.param_groups:  # the next cut starts again from the base rate
            group["lr"] = finetune.lr
    phases["finetuning"] = time.perf_counter() - mark
    mark = time.perf_counter()
    metric, val_loss = run.evaluate()
    if not math.isfinite(val_loss):
        raise TrainingDiverged(f"validation loss became {val_loss} at step {state.counters.step}")
    phases["evaluation"] = time.perf_counter() - mark

    decision: Decision = "scheduled"
    done = state.counters.step >= limit
    recovered = 0
    if adaptive:
        mark = time.perf_counter()
        judged = judge(run, target=target, metric=metric, loss=val_loss, limit=limit)
        verdict, metric, val_loss, recovered = (
            judged.verdict,
            judged.metric,
            judged.loss,
            judged.recovery_epochs,
        )
        if recovered:
            phases["recovery"] = time.perf_counter() - mark
        assert verdict.verdict != "recover"  # judge() spends every recovery round it is given
        decision = verdict.verdict
        state.controller = verdict.state
        state.next_target = verdict.next_sparsity
        done = verdict.done
        if decision == "rollback":
            run.report(
                target=target,
                metric=metric,
                loss=val_loss,
                decision=decision,
                seconds=time.perf_counter() - start,
                epochs=state.counters.finetune_epochs - epochs_before,
                phases=phases,
                recovery_epochs=recovered,
            )
            assert snapshot is not None
            if verdict.to_within and run.fallback is not None:
                run.load_fallback()  # the provisional steps are given up together
            else:  # the step before this one (within tolerance when it was the provisional one)
                run.load_snapshot(snapshot)
            if done:
                state.stop_reason = "no_headroom"
            run.checkpoint()
            return not done
        if decision == "provisional":
            # built on, not returned: the model before this step was within tolerance (unless
            # one is held already) and is what the run returns if it ends past tolerance
            assert snapshot is not None
            run.hold_fallback(snapshot)
        else:
            run.release_fallback()
        if done:
            reached = target >= state.target - 1e-9
            state.stop_reason = "target_reached" if reached else "no_headroom"
    elif done:
        state.stop_reason = "schedule_done"
    run.report(
        target=target,
        metric=metric,
        loss=val_loss if math.isnan(loss) else loss,
        decision=decision,
        seconds=time.perf_counter() - start,
        epochs=state.counters.finetune_epochs - epochs_before,
        phases=phases,
        recovery_epochs=recovered,
    )
    run.checkpoint()
    return not done
