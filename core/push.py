"""The final push: an adaptive run stopped short of its target climbs to it during its final
fine-tuning, which has many more epochs than a step, and keeps that only within tolerance.

`core.loop.final` runs it; a failed push is reported as a rolled-back step and the run returns
its last accepted model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from core.finetune import cosine_lr
from core.outcome import accepted_target
from core.registries import SCHEDULES
from core.run import Run
from core.step import cut


def push_target(run: Run) -> float | None:
    """The sparsity an adaptive run stopped short of its target tries in its final fine-tuning.

    The controller judges each step after a few epochs; the final fine-tuning has many more,
    which is how a fixed schedule ends within tolerance at sparsities where an adaptive step
    was rolled back. So a run that stopped below a number target (no headroom, its step limit
    or its step budget) climbs to the target once more during its final fine-tuning; if that
    ends past the tolerance, it falls back to the last accepted model, which was within it, as
    it was accepted (the final epochs went to the push).
    None when there is nothing to push to: a fixed schedule, a `max` search (its target is only
    a bound), a run at its target, or one out of time.
    """
    state = run.state
    prune_spec = run.spec.prune
    if not SCHEDULES.info(prune_spec.schedule.kind)["adaptive"] or prune_spec.search_max:
        return None
    if state.stop_reason not in ("no_headroom", "step_limit", "max_epochs"):
        return None
    if built_on(run) >= state.target - 1e-9:
        return None
    return state.target


def built_on(run: Run) -> float:
    """The sparsity the model was asked for: the adaptive controller's last step built on
    (provisional steps it gave up are not), else the last accepted step's."""
    controller = run.state.controller
    if controller is not None:
        return controller.last_good_sparsity
    return accepted_target(run.state.reports)


def ramp_sparsity(start: float, end: float, *, epoch: int, ramp: int) -> float:
    """The sparsity of the push at `epoch` (0-based) of a `ramp`-epoch cubic ramp from `start`
    to `end`: s_e = end - (end - start) (1 - (e + 1) / ramp)^3 (Zhu & Gupta 2017, eq. 1),
    reaching `end` at the ramp's last epoch."""
    if ramp <= 0 or epoch >= ramp - 1:
        return end
    return end - (end - start) * (1.0 - (epoch + 1) / ramp) ** 3


def _constant(decay: Callable[[float], float]) -> Callable[[int], Callable[[float], float]]:
    """`lr_at` for a single-epoch `Run.train` call: that epoch's rate within a longer decay."""
    return lambda _index: decay


def ramp_to(
    run: Run, start: float, end: float, *, epochs: int, phases: dict[str, float]
) -> tuple[float, bool]:
    """Fine-tune `epochs` epochs on one cosine decay while the sparsity climbs from `start` to
    `end` over the first half of them, one cut per epoch (the way a fixed schedule nears its
    target without what a single large cut destroys). Every cut scores on the same calibration
    batches (they follow the step counter, which the ramp does not move), so a resumed run
    repeats the ramp exactly. Returns the last mean loss and whether the ramp reached `end`
    (the budget or the clock can end it sooner)."""
    finetune = run.spec.finetune
    ramp = max(1, epochs // 2)
    loss, reached = math.nan, False
    for epoch in range(epochs):
        if epoch < ramp:
            sparsity = ramp_sparsity(start, end, epoch=epoch, ramp=ramp)
            for name, seconds in cut(run, sparsity).items():
                phases[name] = phases.get(name, 0.0) + seconds
            run.phase("finetuning")
        before = run.state.counters.finetune_epochs
        # one epoch at a time on the decay of all `epochs`
        decay = cosine_lr(base=finetune.lr, epoch=epoch, epochs=epochs)
        loss = run.train(1, lr_at=_constant(decay))
        if run.state.counters.finetune_epochs == before:  # the budget or the clock ran out
            break
        reached = epoch >= ramp - 1
    return loss, reached
