"""Fixed sparsity schedules, pure functions of the step (the adaptive one: core/controller.py)."""

from __future__ import annotations

from collections.abc import Callable

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
