"""Channel pruning to a fraction of parameters removed, and the check that it is reachable.

A channel job's target is the fraction of the dense model's parameters to remove. Widths are cut
by a channel ratio (`prune_channels`); parameters shrink roughly with the square of the kept width
(rows and columns both go), and layers kept whole (the classifier, attention widths, embeddings,
norms) do not shrink at all, so the ratio that meets a parameter target is found numerically:
regula falsi on ``removed(ratio) - target`` with the Illinois modification (Dowell & Jarratt,
BIT 1971), each evaluation pruning a copy of the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from torch import Tensor, nn

from core.structured.counting import count_params, removed_fraction
from core.structured.removal import ChannelPruneReport, prune_channels

# the largest ratio tried: every layer down to one multiple of round_to (one head)
MAX_RATIO = 0.999
# a target further than this above what the model can reach is refused up front
REACH_TOLERANCE = 0.05


@dataclass(frozen=True)
class ChannelReach:
    """What channel pruning can do to a model: the most it removes and what stays.

    `removable`: fraction of the dense parameters gone with every prunable layer at its floor.
    `kept_whole`: ``"name: reason"`` for layers whose output channels are never cut.
    `largest_remaining`: ``(module, parameters)`` of the modules holding the most parameters then.
    """

    removable: float
    kept_whole: list[str]
    largest_remaining: list[tuple[str, int]]

    def refusal(self, target: float, *, round_to: int) -> str | None:
        """The reason a job at `target` must be refused, or None when it is reachable."""
        if target <= self.removable + REACH_TOLERANCE:
            return None
        remaining = ", ".join(
            f"{name} ({count} parameters)" for name, count in self.largest_remaining
        )
        return (
            f"granularity 'channel': target {target} cannot be reached; with round_to {round_to} "
            f"at most {self.removable:.3f} of the parameters can be removed. Largest parts left: "
            f"{remaining}; kept whole: {'; '.join(self.kept_whole) or 'none'}"
        )


def channel_reach(
    model: nn.Module,
    *,
    example_inputs: Tensor,
    round_to: int,
    dense_params: int,
    dense_widths: Mapping[str, int] | None = None,
    ignored: Collection[str] = (),
    top: int = 5,
) -> ChannelReach:
    """Prune a copy of `model` as far as channel pruning goes and describe what is left.

    Args:
        model: the model (left unchanged).
        example_inputs: a batch the model accepts.
        round_to: kept widths are multiples of this.
        dense_params: the dense model's parameter count (the fraction's denominator).
        dense_widths: as for `prune_channels`.
        ignored: as for `prune_channels`.
        top: how many of the largest remaining modules to name.

    Returns:
        A ChannelReach.
    """
    trial = copy.deepcopy(model)
    report = prune_channels(
        trial,
        example_inputs=example_inputs,
        scores={},
        ratio=MAX_RATIO,
        dense_widths=dense_widths,
        round_to=round_to,
        ignored=ignored,
    )
    own = {
        name: sum(p.numel() for p in module.parameters(recurse=False))
        for name, module in trial.named_modules()
    }
    largest = sorted(((n, c) for n, c in own.items() if c > 0), key=lambda item: -item[1])
    return ChannelReach(
        removable=removed_fraction(params_dense=dense_params, params_pruned=report.params_after),
        kept_whole=report.skipped,
        largest_remaining=largest[:top],
    )


def prune_channels_to_fraction(
    model: nn.Module,
    *,
    example_inputs: Tensor,
    scores: Mapping[str, Tensor],
    fraction: float,
    dense_params: int,
    dense_widths: Mapping[str, int] | None,
    round_to: int,
    ignored: Collection[str] = (),
    tolerance: float = 0.01,
    max_trials: int = 8,
) -> tuple[ChannelPruneReport, float]:
    """Remove channels in place until about `fraction` of the dense parameters are gone.

    The channel ratio is searched on copies (at most `max_trials` of them) for a removed
    fraction within `tolerance` of `fraction`, else the closest one found; then `model` is
    pruned at that ratio with `scores` ranking the channels. Widths only ever shrink, so a
    fraction the model has already passed leaves it as it is.

    Args:
        model: the model to prune in place.
        example_inputs: a batch used to trace the dependency graph.
        scores: per-weight importance keyed by state-dict name.
        fraction: the fraction of `dense_params` to have removed, in [0, 1).
        dense_params: the dense model's parameter count.
        dense_widths: as for `prune_channels`.
        round_to: kept widths are multiples of this.
        ignored: module names whose output channels must not be pruned.
        tolerance: stop searching once the removed fraction is this close to `fraction`.
        max_trials: most copies pruned during the search.

    Returns:
        ``(report, ratio)``: the `prune_channels` report of the final cut and the ratio used.

    Raises:
        ValueError: for a fraction outside [0, 1) or a non-positive `dense_params`.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    if dense_params < 1:
        raise ValueError(f"dense_params must be >= 1, got {dense_params!r}")

    def removed_at(ratio: float) -> float:
        trial = copy.deepcopy(model)
        report = prune_channels(
            trial,
            example_inputs=example_inputs,
            scores={},
            ratio=ratio,
            dense_widths=dense_widths,
            round_to=round_to,
            ignored=ignored,
        )
        return removed_fraction(params_dense=dense_params, params_pruned=report.params_after)

    now = removed_fraction(params_dense=dense_params, params_pruned=count_params(model))
    ratio = 0.0
    if now < fraction - tolerance:
        ratio = _search(
            removed_at, fraction=fraction, now=now, tolerance=tolerance, trials=max_trials
        )
    report = prune_channels(
        model,
        example_inputs=example_inputs,
        scores=scores,
        ratio=ratio,
        dense_widths=dense_widths,
        round_to=round_to,
        ignored=ignored,
    )
    return report, ratio


def _search(
    removed_at: Callable[[float], float],
    *,
    fraction: float,
    now: float,
    tolerance: float,
    trials: int,
) -> float:
    """Illinois regula falsi over the ratio in [0, MAX_RATIO]; returns the best ratio found."""
    # bracket: at ratio 0 nothing more goes; ratio 1 would remove every prunable parameter
    lo, f_lo = 0.0, now - fraction
    hi, f_hi = 1.0, 1.0 - fraction
    best_ratio, best_gap = 0.0, abs(f_lo)
    side = 0
    for _ in range(trials):
        ratio = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else (lo + hi) / 2
        ratio = min(MAX_RATIO, max(0.0, ratio))
        gap = removed_at(ratio) - fraction
        if abs(gap) < best_gap:
            best_ratio, best_gap = ratio, abs(gap)
        if best_gap <= tolerance or hi - lo < 1e-4:
            break
        if gap < 0:
            lo, f_lo = ratio, gap
            if side == -1:
                f_hi /= 2  # Illinois: halve the stale end so the bracket keeps shrinking
            side = -1
        else:
            hi, f_hi = ratio, gap
            if side == 1:
                f_lo /= 2
            side = 1
    return best_ratio
