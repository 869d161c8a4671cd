"""Sparsity schedules (pure functions of the step) and the adaptive controller."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from core.registries import SCHEDULES

ScheduleFn = Callable[[int], float]


def _check(step: int, final: float, steps: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= final < 1.0:
        raise ValueError(f"final sparsity must be in [0, 1), got {final}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")


def oneshot_sparsity(step: int, *, final: float, steps: int) -> float:
    """All of the target at the first step: s(t) = final for t >= 1, 0 at t = 0."""
    _check(step, final, steps)
    return final if step >= 1 else 0.0


def linear_sparsity(step: int, *, final: float, steps: int) -> float:
    """Equal increments: s(t) = final * min(t, steps) / steps."""
    _check(step, final, steps)
    return final * min(step, steps) / steps


def cubic_sparsity(step: int, *, final: float, steps: int, initial: float = 0.0) -> float:
    """Gradual pruning schedule of Zhu & Gupta 2017 (arXiv 1710.01878), eq. 1.

    s(t) = final + (initial - final) * (1 - t / steps) ** 3 for 0 <= t <= steps: prunes fast
    while many redundant weights remain and slowly near the target.
    """
    _check(step, final, steps)
    progress = min(step, steps) / steps
    return final + (initial - final) * (1.0 - progress) ** 3


def fixed_schedule(kind: str, *, final: float, steps: int) -> ScheduleFn:
    """Return the fixed schedule `kind` (a SCHEDULES entry) as a function of the step alone."""
    fixed = [name for name in SCHEDULES if not SCHEDULES.info(name)["adaptive"]]
    if kind not in fixed:
        raise ValueError(f"unknown schedule {kind!r}; expected one of {sorted(fixed)}")
    function: Callable[..., float] = SCHEDULES.resolve(kind)
    _check(0, final, steps)
    return lambda step: function(step, final=final, steps=steps)


Verdict = Literal["accelerate", "keep", "shrink", "rollback"]


@dataclass(frozen=True)
class ControllerState:
    """Everything the adaptive controller knows; saved in every checkpoint."""

    target: float
    increment: float
    min_increment: float
    last_good_sparsity: float = 0.0
    best_sparsity: float = 0.0
    rollbacks: int = 0
    ceiling: float = 1.0  # the lowest sparsity that was rolled back: never proposed again

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ControllerDecision:
    verdict: Verdict
    next_sparsity: float
    state: ControllerState
    done: bool


class AdaptiveController:
    """Chooses the next sparsity from the validation drop of the step just taken.

    With tolerance `tol`, drop `d` and headroom h = (tol - d) / tol:
    - d > tol: roll back to the last good sparsity and halve the increment;
    - h >= accelerate_above: increment *= grow (capped at what is left to the target);
    - h <  shrink_below: increment *= shrink;
    - otherwise keep the increment.
    A proposal at or past the lowest rolled-back sparsity (the ceiling) is replaced by the
    midpoint between the current sparsity and the ceiling, so the search narrows instead of
    repeating a step that already failed. The run is done when the target is accepted, or when
    the increment or the gap to the ceiling falls below `min_increment` (no headroom left: the
    last good sparsity is the answer).
    """

    def __init__(
        self,
        *,
        tolerance: float,
        grow: float = 1.5,
        shrink: float = 0.6,
        accelerate_above: float = 0.5,
        shrink_below: float = 0.2,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if grow < 1.0 or not 0.0 < shrink < 1.0:
            raise ValueError(f"need grow >= 1 and 0 < shrink < 1, got {grow}, {shrink}")
        self.tolerance = tolerance
        self.grow = grow
        self.shrink = shrink
        self.accelerate_above = accelerate_above
        self.shrink_below = shrink_below

    @staticmethod
    def initial_state(*, target: float, steps: int) -> ControllerState:
        """Start with `steps` equal increments; give up on increments 1/64 of that size."""
        if not 0.0 < target < 1.0 or steps < 1:
            raise ValueError(f"need 0 < target < 1 and steps >= 1, got {target}, {steps}")
        increment = target / steps
        return ControllerState(target=target, increment=increment, min_increment=increment / 64)

    def first_sparsity(self, state: ControllerState) -> float:
        return min(state.target, state.increment)

    def decide(self, state: ControllerState, *, sparsity: float, drop: float) -> ControllerDecision:
        """Judge the step that reached `sparsity` with metric drop `drop` (dense - pruned)."""
        if drop > self.tolerance:
            increment = state.increment / 2
            ceiling = min(state.ceiling, sparsity)
            new = replace(
                state, increment=increment, rollbacks=state.rollbacks + 1, ceiling=ceiling
            )
            good = state.last_good_sparsity
            done = increment < state.min_increment or ceiling - good < state.min_increment
            next_sparsity = min(state.target, good + increment, (good + ceiling) / 2)
            return ControllerDecision("rollback", next_sparsity, new, done)
        headroom = 1.0 if self.tolerance == 0 else (self.tolerance - drop) / self.tolerance
        verdict: Verdict
        if headroom >= self.accelerate_above:
            verdict, increment = "accelerate", state.increment * self.grow
        elif headroom < self.shrink_below:
            verdict, increment = "shrink", state.increment * self.shrink
        else:
            verdict, increment = "keep", state.increment
        remaining = state.target - sparsity
        increment = max(min(increment, remaining), 0.0)
        new = replace(
            state,
            increment=max(increment, state.min_increment),
            last_good_sparsity=sparsity,
            best_sparsity=max(state.best_sparsity, sparsity),
        )
        proposal = min(state.target, sparsity + increment)
        if proposal >= state.ceiling:
            proposal = (sparsity + state.ceiling) / 2
        done = remaining <= 1e-9 or state.ceiling - sparsity < state.min_increment
        return ControllerDecision(verdict, proposal, new, done)
