"""The adaptive step's judgement: a bounded recovery before the controller's verdict.

A step that looks over tolerance right after its cut is given up to the recovery rounds the
controller asks for (one fine-tuning epoch each, annealed to zero as the final fine-tuning
will be), and is judged on the recovered metric. The epochs come out of the budget that the
adaptive steps may use; the final fine-tuning's epochs are held back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.controller import ControllerDecision
from core.errors import TrainingDiverged
from core.finetune import cosine_lr
from core.outcome import ACCEPTED_STEPS
from core.report import StopReason
from core.run import Run


@dataclass(frozen=True)
class Judgement:
    """The controller's verdict and the metric, loss and recovery epochs it was based on."""

    verdict: ControllerDecision
    metric: float
    loss: float
    recovery_epochs: int


def epochs_for_steps(run: Run) -> int:
    """Fine-tuning epochs the adaptive steps may still use: the final epochs are kept back."""
    finetune, budget = run.spec.finetune, run.spec.budget
    reserve = min(finetune.final_epochs, budget.max_epochs - 1)
    return budget.max_epochs - reserve - run.state.counters.finetune_epochs


def unspent_step_epochs(run: Run) -> int:
    """Epochs of the nominal plan (`steps` x `epochs_per_step`, as a fixed schedule would
    spend them) that the adaptive steps left unused, within the budget for steps.

    A run that reaches its target early spends them in the final fine-tuning: at the same
    epochs as a fixed schedule, the time a cubic schedule spends near the target is the
    adaptive run's consolidation at it.
    """
    finetune, steps = run.spec.finetune, run.spec.prune.schedule.steps
    nominal = min(steps * finetune.epochs_per_step, epochs_for_steps(run) + _used(run))
    return max(0, nominal - _used(run))


def _used(run: Run) -> int:
    return run.state.counters.finetune_epochs


def step_budget_spent(run: Run) -> StopReason | None:
    """ "max_epochs" when the adaptive steps' share of the budget cannot pay for another step."""
    needed = max(1, run.spec.finetune.epochs_per_step)
    return "max_epochs" if epochs_for_steps(run) < needed else None


def steps_left(run: Run, *, limit: int) -> int:
    """Steps the plan has after the one being judged: the schedule's nominal `steps` less the
    steps accepted so far (this one included), within what the budget and the step limit allow.

    Rolled-back steps spend budget but are not steps of the plan: the cubic plan the controller
    follows is one of accepted steps (`core.controller.planned_fraction`).
    """
    per_step = max(1, run.spec.finetune.epochs_per_step)
    accepted = sum(1 for r in run.state.reports if r.decision in ACCEPTED_STEPS) + 1
    # past the nominal steps (after slow steps) the plan is to reach the target in one more,
    # which the controller's bounded growth turns into a few
    nominal = max(1, run.spec.prune.schedule.steps - accepted)
    budget = min(limit - run.state.counters.step, epochs_for_steps(run) // per_step)
    return max(0, min(nominal, budget))


def judge(run: Run, *, target: float, metric: float, loss: float, limit: int) -> Judgement:
    """The controller's verdict on a step at `target`, after the recovery rounds it asks for.

    The controller plans in requested sparsities: the measured one differs by count rounding,
    floors or channel widths, and chasing that gap would repeat the step.
    """
    state = run.state
    assert state.controller is not None
    recovered = 0
    lr = run.spec.finetune.lr
    while True:
        verdict = run.controller.decide(
            state.controller,
            sparsity=target,
            drop=run.drop(metric),
            metric=metric,
            can_recover=epochs_for_steps(run) > 0,
            steps_left=steps_left(run, limit=limit),
        )
        state.controller = verdict.state
        if verdict.verdict != "recover":
            return Judgement(verdict=verdict, metric=metric, loss=loss, recovery_epochs=recovered)
        before = state.counters.finetune_epochs
        run.train(1, lr_at=lambda index: cosine_lr(base=lr, epoch=index, epochs=1))
        assert run.optimizer is not None
        for group in run.optimizer.param_groups:  # the next step starts again from the base rate
            group["lr"] = lr
        recovered += state.counters.finetune_epochs - before
        metric, loss = run.evaluate()
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"validation loss became {loss} at step {state.counters.step} (recovery)"
            )
