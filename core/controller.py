"""The adaptive controller: chooses each pruning step from the recovered validation metric.

Pure functions of its state and the measurements it is given (no torch), so every decision can
be tested without a model. Four ideas keep it from stopping short of what the task allows:

- Steps are fractions of the weights that are still left: s' = 1 - (1 - s)(1 - r). With the
  steps left known, an accepted step's fraction is the cubic schedule's, re-planned from where
  the run is (`planned_fraction`): while every step is within tolerance the run follows the
  cubic schedule exactly, and it slows down where the metric says so. The fraction grows at
  most by `grow` per accepted step, so the controller never jumps from far below to the target
  in one cut (not even to catch up after rollbacks).
- A step that looks over tolerance gets a bounded recovery (more fine-tuning at the same masks)
  and is measured again before it is judged: one epoch after a cut is not the recovered metric.
- Tolerance is counted in whole examples of the validation split, and the split's binomial
  standard error sqrt(p (1 - p) / n) enters every judgement of a miss: it decides how much
  recovery a miss deserves, and a miss that recovery left within one standard error of the
  tolerance is not evidence against the step. Such a step is `provisional`: the run builds on
  it with a smaller increment, and the loop holds back the last model within tolerance, which
  the job returns if the run ends past it. A second reading in a row past the tolerance, or a
  provisional step the run could only end on below its target, gives the provisional steps up
  (`fall_back`): back to the model held back. A larger miss is rolled back.
- A rolled-back sparsity (the ceiling) is tried again once the model has recovered below it:
  the ceiling is provisional. (A run that stops short of its target tries the target once more
  with the final fine-tuning's epochs: see `core.push`.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Verdict = Literal["accelerate", "keep", "shrink", "provisional", "rollback", "recover"]

_EPS = 1e-9


def allowed_examples(tolerance: float, examples: int) -> int:
    """The tolerance in whole validation examples: floor(tolerance * n)."""
    return math.floor(tolerance * examples + _EPS)


def dropped_examples(drop: float, examples: int) -> int:
    """A metric drop in whole validation examples: round(drop * n) (accuracy moves by 1/n)."""
    return round(drop * examples)


def over_tolerance(drop: float, tolerance: float, examples: int) -> bool:
    """Whether `drop` exceeds `tolerance`, compared in whole examples of a split of `examples`.

    With no example count (0) the comparison carries an epsilon, so that float noise such as
    0.875 - 0.845 = 0.030000000000000027 does not count as more than 0.03.
    """
    if examples > 0:
        return dropped_examples(drop, examples) > allowed_examples(tolerance, examples)
    return drop > tolerance + _EPS


def standard_error(metric: float, examples: int) -> float:
    """Binomial standard error of an accuracy p measured on n examples: sqrt(p (1 - p) / n)."""
    if examples <= 0:
        return 0.0
    p = min(max(metric, 0.0), 1.0)
    return math.sqrt(p * (1.0 - p) / examples)


def next_sparsity(sparsity: float, fraction: float) -> float:
    """Remove `fraction` of the weights still left: 1 - (1 - s)(1 - r)."""
    return 1.0 - (1.0 - sparsity) * (1.0 - fraction)


def planned_fraction(sparsity: float, target: float, steps: int) -> float:
    """The fraction of the weights left that the cubic schedule, re-planned from `sparsity` to
    reach `target` in `steps` more steps, removes next (Zhu & Gupta 2017, arXiv 1710.01878):
    s' = T - (T - s)(1 - 1 / k)^3, as a fraction r = 1 - (1 - s') / (1 - s).

    Re-planning after every step reproduces the cubic schedule exactly
    (T - T (1 - (i + 1) / N)^3 from step i of N): large cuts while much is left, small ones
    near the target, where a cut costs most.
    """
    if steps <= 0 or sparsity >= target:
        return 0.0
    planned = target - (target - sparsity) * (1.0 - 1.0 / steps) ** 3
    return 1.0 - (1.0 - planned) / (1.0 - sparsity)


@dataclass(frozen=True)
class ControllerState:
    """Everything the adaptive controller knows; saved in every checkpoint.

    `increment` is the fraction of the remaining weights the next step removes. `ceiling` is the
    lowest sparsity rolled back so far (1.0: none); it is provisional: once the model has
    recovered below it with room to spare it is tried again, `ceiling_failures` times at most
    before it holds. `last_good_sparsity` is the step the run builds on, `within_sparsity` the
    last one within tolerance (they differ while the run builds on provisional steps, the first
    of which is at `provisional_from`).
    """

    target: float
    increment: float
    min_increment: float
    max_increment: float
    search_max: bool = False
    last_good_sparsity: float = 0.0
    best_sparsity: float = 0.0
    rollbacks: int = 0
    ceiling: float = 1.0
    ceiling_failures: int = 0
    recovery_round: int = 0
    recovery_drop: float = 0.0  # the drop measured before the last recovery round
    curve: tuple[tuple[float, float], ...] = ()  # accepted (sparsity, drop) points
    within_sparsity: float = 0.0  # the last step accepted within tolerance
    provisional_from: float = 1.0  # the first provisional step since then (1.0: none)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["curve"] = [list(point) for point in self.curve]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ControllerState:
        values = dict(data)
        values["curve"] = tuple((float(s), float(d)) for s, d in values.get("curve", ()))
        return cls(**values)


@dataclass(frozen=True)
class ControllerDecision:
    verdict: Verdict
    next_sparsity: float
    state: ControllerState
    done: bool
    # a rollback that gives up the provisional steps: back to the last step within tolerance
    # (the loop's held-back model), not to the step before this one
    to_within: bool = False


class AdaptiveController:
    """Chooses the next sparsity from the validation drop of the step just taken.

    With the tolerance and the drop counted in whole examples (allowed A, dropped D), one
    standard error of the split in examples (E) and headroom h = (A - D) / A:
    - D > A: if recovery rounds are left, recover (fine-tune more at the same masks and
      measure again); a miss within two standard errors of the tolerance gets
      `recovery_rounds` rounds, a larger one a single round, and a round that wins back no
      example ends the recovery. A miss that recovery left at D - A <= E is `provisional`: kept,
      with the increment shrunk (unless the step before was provisional too, or the run could
      only end on it: then `fall_back`). A larger one rolls back to the last good sparsity,
      halves the increment and makes this sparsity the ceiling.
    - h >= accelerate_above: accelerate; h < shrink_below: shrink (the increment *= shrink);
      else keep. With `steps_left` given, the increment is the cubic schedule's re-planned
      fraction (times `shrink` when shrinking); without it, it grows by `grow` on accelerate.
      Either way it is at most `grow` times the last one.
    Proposals stop short of the ceiling (the midpoint between the current sparsity and it) until
    a step is accepted with headroom >= shrink_below: then the ceiling itself is tried again,
    up to `ceiling_retries` more times. The run is done when the target is accepted, when the
    increment falls below `min_increment`, or when the gap to a ceiling that holds is smaller
    than one minimal step.
    """

    def __init__(
        self,
        *,
        tolerance: float,
        examples: int = 0,
        grow: float = 1.5,
        shrink: float = 0.6,
        accelerate_above: float = 0.5,
        shrink_below: float = 0.2,
        recovery_rounds: int = 2,
        ceiling_retries: int = 1,
    ) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0, got {tolerance}")
        if grow < 1.0 or not 0.0 < shrink < 1.0:
            raise ValueError(f"need grow >= 1 and 0 < shrink < 1, got {grow}, {shrink}")
        if examples < 0 or recovery_rounds < 0 or ceiling_retries < 0:
            raise ValueError("examples, recovery_rounds and ceiling_retries must be >= 0")
        self.tolerance = tolerance
        self.examples = examples
        self.grow = grow
        self.shrink = shrink
        self.accelerate_above = accelerate_above
        self.shrink_below = shrink_below
        self.recovery_rounds = recovery_rounds
        self.ceiling_retries = ceiling_retries

    @staticmethod
    def initial_state(*, target: float, steps: int, search_max: bool = False) -> ControllerState:
        """Start with the larger of `steps` equal density ratios, r = 1 - (1 - target) ** (1 /
        steps), and the first step of the cubic schedule, target (1 - (1 - 1 / steps) ** 3)
        (Zhu & Gupta 2017, arXiv 1710.01878): a low target is not approached more timidly
        than a fixed schedule would, where the first cuts cost nothing.

        The increment may grow to max(0.5, r) (at most half of what is left per step, unless
        the job asked for bigger steps) and gives up below r / 16.
        """
        if not 0.0 < target < 1.0 or steps < 1:
            raise ValueError(f"need 0 < target < 1 and steps >= 1, got {target}, {steps}")
        cubic_first = target * (1.0 - (1.0 - 1.0 / steps) ** 3)
        increment = max(1.0 - (1.0 - target) ** (1.0 / steps), cubic_first)
        return ControllerState(
            target=target,
            increment=increment,
            min_increment=increment / 16,
            max_increment=max(0.5, increment),
            search_max=search_max,
        )

    def first_sparsity(self, state: ControllerState) -> float:
        return self._propose(state, 0.0, state.increment)

    # ------------------------------------------------------------------ helpers
    def _units(self, drop: float) -> tuple[float, float]:
        """(allowed, dropped) in examples, or in metric units when no example count is known."""
        if self.examples > 0:
            allowed = allowed_examples(self.tolerance, self.examples)
            return float(allowed), float(dropped_examples(drop, self.examples))
        return self.tolerance, drop

    def _noise(self, metric: float | None) -> float:
        """One standard error, in the same units as `_units`."""
        if metric is None or self.examples <= 0:
            return 0.0
        return standard_error(metric, self.examples) * self.examples

    def _one_example(self) -> float:
        return 1.0 if self.examples > 0 else _EPS

    def _propose(self, state: ControllerState, sparsity: float, increment: float) -> float:
        """The next step from `sparsity`, held below the ceiling and snapped onto the target."""
        proposal = next_sparsity(sparsity, increment)
        # a last step smaller than a minimal one goes straight to the target
        if proposal >= next_sparsity(state.target, -state.min_increment) - _EPS:
            proposal = state.target
        proposal = min(proposal, state.target)
        ceiling_holds = state.ceiling_failures > self.ceiling_retries
        if proposal >= state.ceiling - _EPS:
            # a provisional ceiling is tried again itself; one that holds is approached by halves
            proposal = state.ceiling if not ceiling_holds else (sparsity + state.ceiling) / 2
        return proposal

    def _gap_closed(self, state: ControllerState, sparsity: float) -> bool:
        """The half-way step towards a holding ceiling would be smaller than `min_increment`."""
        if state.ceiling >= 1.0 or state.ceiling_failures <= self.ceiling_retries:
            return False
        return next_sparsity(sparsity, 2 * state.min_increment) >= state.ceiling - _EPS

    # ----------------------------------------------------------------- decision
    def decide(
        self,
        state: ControllerState,
        *,
        sparsity: float,
        drop: float,
        metric: float | None = None,
        can_recover: bool = True,
        steps_left: int | None = None,
    ) -> ControllerDecision:
        """Judge the step that reached `sparsity` with metric drop `drop` (dense - pruned).

        Args:
            state: the controller's state before this measurement.
            sparsity: the sparsity the step asked for.
            drop: dense metric minus the metric just measured.
            metric: the metric just measured (for its standard error; None: no noise model).
            can_recover: False when no recovery epochs are left in the budget.
            steps_left: how many more steps the plan has (the nominal steps not yet taken,
                within what the budget allows; None: no plan). An accepted step's increment is
                the cubic schedule's, re-planned to reach the target in that many steps
                (`planned_fraction`), by at most `grow` times the last.
        """
        allowed, dropped = self._units(drop)
        noise = self._noise(metric)
        if dropped > allowed + _EPS:
            excess = dropped - allowed
            rounds = (
                self.recovery_rounds if excess <= 2 * noise + _EPS else min(1, self.recovery_rounds)
            )
            # measured twice on the same examples: any example won back is progress
            improving = state.recovery_round == 0 or (
                self._units(state.recovery_drop)[1] - dropped >= self._one_example()
            )
            if can_recover and state.recovery_round < rounds and improving:
                recovering = replace(
                    state, recovery_round=state.recovery_round + 1, recovery_drop=drop
                )
                return ControllerDecision("recover", sparsity, recovering, False)
            if excess <= noise + _EPS and state.provisional_from < 1.0:
                # a second reading in a row past the tolerance: that is evidence
                return self.fall_back(state)
            if excess <= noise + _EPS:
                # within one standard error of the tolerance: no evidence against the step
                kept = self._accept(
                    state,
                    sparsity=sparsity,
                    drop=drop,
                    headroom=self._headroom(drop),
                    steps_left=steps_left,
                    provisional=True,
                )
                if kept.done and sparsity < state.target - _EPS:
                    # nowhere left to go from it: not a model to end on
                    return self.fall_back(kept.state)
                return kept
            return self._rollback(state, sparsity)
        return self._accept(
            state,
            sparsity=sparsity,
            drop=drop,
            headroom=self._headroom(drop),
            steps_left=steps_left,
        )

    def _headroom(self, drop: float) -> float:
        allowed, dropped = self._units(drop)
        return 1.0 if allowed <= 0 else (allowed - dropped) / allowed

    def fall_back(self, state: ControllerState) -> ControllerDecision:
        """Give up the provisional steps: a second reading in a row past the tolerance, or a
        provisional step the run could only end on below its target. Back to the last step
        within tolerance, with the first provisional sparsity as a rolled-back one (the ceiling)
        and the increment halved, so that the search goes on from a model the job can return."""
        failed = state.provisional_from
        if failed >= 1.0:
            raise ValueError("no provisional step to fall back from")
        back = replace(state, last_good_sparsity=state.within_sparsity, provisional_from=1.0)
        return replace(self._rollback(back, failed), to_within=True)

    def _rollback(self, state: ControllerState, sparsity: float) -> ControllerDecision:
        increment = state.increment / 2
        if sparsity < state.ceiling - _EPS:
            ceiling, failures = sparsity, 1
        else:
            ceiling, failures = state.ceiling, state.ceiling_failures + 1
        new = replace(
            state,
            increment=increment,
            rollbacks=state.rollbacks + 1,
            ceiling=ceiling,
            ceiling_failures=failures,
            recovery_round=0,
            recovery_drop=0.0,
        )
        good = state.last_good_sparsity
        # after a failure the way up is halved: never straight back to where it failed
        proposal = min(self._propose(new, good, increment), (good + ceiling) / 2)
        done = increment < state.min_increment or self._gap_closed(new, good)
        done = done or next_sparsity(good, state.min_increment) >= ceiling - _EPS
        return ControllerDecision("rollback", proposal, new, done)

    def _accept(
        self,
        state: ControllerState,
        *,
        sparsity: float,
        drop: float,
        headroom: float,
        steps_left: int | None,
        provisional: bool = False,
    ) -> ControllerDecision:
        verdict: Verdict
        if provisional:
            verdict = "provisional"
        elif headroom >= self.accelerate_above:
            verdict = "accelerate"
        elif headroom < self.shrink_below:
            verdict = "shrink"
        else:
            verdict = "keep"
        slow = verdict in ("shrink", "provisional")
        if steps_left is not None and steps_left > 0 and sparsity < state.target:
            planned = planned_fraction(sparsity, state.target, steps_left)
            increment = min(planned * (self.shrink if slow else 1.0), state.increment * self.grow)
        elif verdict == "accelerate":
            increment = state.increment * self.grow
        else:
            increment = state.increment * (self.shrink if slow else 1.0)
        increment = min(max(increment, state.min_increment), state.max_increment)
        ceiling, failures = state.ceiling, state.ceiling_failures
        if sparsity >= ceiling - _EPS and not provisional:
            ceiling, failures = 1.0, 0  # the ceiling was tried again and passed: it is gone
        new = replace(
            state,
            increment=increment,
            last_good_sparsity=sparsity,
            best_sparsity=max(state.best_sparsity, sparsity),
            ceiling=ceiling,
            ceiling_failures=failures,
            recovery_round=0,
            recovery_drop=0.0,
            curve=(*state.curve, (round(sparsity, 6), drop)),
            within_sparsity=state.within_sparsity if provisional else sparsity,
            provisional_from=min(state.provisional_from, sparsity) if provisional else 1.0,
        )
        reached = sparsity >= state.target - _EPS
        proposal = state.target if reached else self._propose(new, sparsity, increment)
        done = reached or self._gap_closed(new, sparsity)
        if (
            not reached
            and headroom < self.shrink_below
            and ceiling < 1.0
            and proposal >= ceiling - _EPS
        ):
            # not recovered enough below the ceiling to try it again: approach it by halves,
            # down to a gap of two minimal steps (closer, the halves would go on for ever)
            proposal = (sparsity + ceiling) / 2
            done = done or next_sparsity(sparsity, 2 * state.min_increment) >= ceiling - _EPS
        done = done or proposal - sparsity < _EPS
        return ControllerDecision(verdict, proposal, new, done)
