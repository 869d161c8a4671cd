"""Width pruning (Minitron): fewer key/value groups with their query heads, fewer MLP channels
and, where the family allows it, a smaller hidden size, chosen to remove a target fraction of
the parameters.

The configs of the supported families state one head count, one intermediate size and one
hidden size for the whole model, so every block keeps the same number of heads and channels;
which ones it keeps is its own choice, by the importances of `core.hf.shrink.importance`.
Sizes are searched on the `meta` device: the removed fraction of a candidate is counted from
its cut tensor shapes, with nothing allocated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import Tensor, nn

from core.hf.shrink.families import Family, family_of
from core.hf.shrink.importance import WidthImportance, width_importance
from core.hf.shrink.slicing import (
    Geometry,
    Shrunk,
    WidthCut,
    counted,
    cut_width,
    geometry_of,
    meta_state,
    parameter_names,
    rebuild,
    rewrite_config,
)

_SEARCH_ITERATIONS = 24
# candidates within this distance of the target count as meeting it; among them the one whose
# heads and MLP lose the most similar fractions is taken (no dimension is cut alone)
_CLOSE_ENOUGH = 0.025


def round_width(value: float, *, multiple: int, dense: int) -> int:
    """`value` rounded to a multiple of `multiple`, at least one multiple, at most `dense`."""
    if dense <= multiple:
        return dense
    kept = math.floor(value / multiple + 0.5) * multiple
    return min(max(kept, multiple), dense)


def _sizes(
    dense: Geometry,
    *,
    groups: int,
    level: float,
    round_to: int,
    hidden: bool,
    attention_follows_hidden: bool = False,
) -> Geometry:
    sizes = Geometry(
        layers=dense.layers,
        heads=groups * dense.queries_per_group,
        kv_heads=groups,
        head_dim=dense.head_dim,
        intermediate=round_width(
            dense.intermediate * (1.0 - level), multiple=round_to, dense=dense.intermediate
        ),
        # configs check hidden_size % num_attention_heads (Llama's does)
        hidden=round_width(
            dense.hidden * (1.0 - level),
            multiple=math.lcm(round_to, groups * dense.queries_per_group),
            dense=dense.hidden,
        )
        if hidden
        else dense.hidden,
    )
    if attention_follows_hidden:
        return replace(sizes, head_dim=sizes.hidden // sizes.heads)
    return sizes


def _first(count: int, size: int) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(range(count)) for _ in range(size))


def removed_fraction_of(
    model: nn.Module,
    *,
    family: Family,
    dense: Geometry,
    sizes: Geometry,
    state: dict[str, Tensor] | None = None,
) -> float:
    """The fraction of `model`'s parameters a cut to `sizes` removes (counted on `meta`;
    `state`: the model's `meta_state`, when the caller has it)."""
    state = meta_state(model) if state is None else state
    names = parameter_names(model)
    cut = WidthCut(
        groups=_first(sizes.kv_heads, dense.layers),
        channels=_first(sizes.intermediate, dense.layers),
        hidden=tuple(range(sizes.hidden)) if sizes.hidden != dense.hidden else None,
        head_channels=_first(sizes.heads * sizes.head_dim, dense.layers)
        if sizes.head_dim != dense.head_dim
        else None,
    )
    after = counted(cut_width(state, model=model, family=family, dense=dense, cut=cut), names)
    return 1.0 - after / counted(state, names)


def solve_sizes(
    *,
    dense: Geometry,
    target: float,
    removed: Callable[[Geometry], float],
    prune_heads: bool,
    round_to: int,
    hidden: bool,
    heads_divide_hidden: bool = False,
    attention_follows_hidden: bool = False,
) -> tuple[Geometry, float]:
    """The sizes whose removed fraction is nearest `target`, and that fraction.

    `heads_divide_hidden`: only head counts that divide the (kept) hidden size are candidates.
    `attention_follows_hidden`: the head size is the hidden size over the head count.

    For every key/value group count, a bisection on one shrink level s sets the MLP width
    (and hidden size) to round(dense * (1 - s)); among the candidates within 2.5 points of the
    target, the one whose heads and MLP lose the most similar fractions wins, otherwise the
    nearest.
    """
    options = [
        groups
        for groups in (range(dense.kv_heads, 0, -1) if prune_heads else [dense.kv_heads])
        if hidden
        or not heads_divide_hidden
        or dense.hidden % (groups * dense.queries_per_group) == 0
    ]
    found: list[tuple[float, float, Geometry]] = []
    for groups in options:

        def at(level: float, groups: int = groups) -> Geometry:
            return _sizes(
                dense,
                groups=groups,
                level=level,
                round_to=round_to,
                hidden=hidden,
                attention_follows_hidden=attention_follows_hidden,
            )

        low, high = 0.0, 1.0
        for _ in range(_SEARCH_ITERATIONS):
            middle = (low + high) / 2
            if removed(at(middle)) < target:
                low = middle
            else:
                high = middle
        for sizes in {at(low), at(high)}:
            fraction = removed(sizes)
            imbalance = abs(
                (1 - sizes.kv_heads / dense.kv_heads)
                - (1 - sizes.intermediate / dense.intermediate)
            )
            found.append((fraction, imbalance, sizes))
    close = [item for item in found if abs(item[0] - target) <= _CLOSE_ENOUGH]
    if close:
        fraction, _, sizes = min(close, key=lambda item: (item[1], abs(item[0] - target)))
    else:
        fraction, _, sizes = min(found, key=lambda item: abs(item[0] - target))
    return sizes, fraction


def _top(scores: Tensor, count: int) -> tuple[int, ...]:
    order = torch.argsort(scores, descending=True, stable=True)[:count]
    return tuple(sorted(int(index) for index in order))


def _per_head(scores: Tensor, *, heads: int, keep: int) -> tuple[int, ...]:
    """The `keep` most important channels of every head, as rows of the projection."""
    width = scores.numel() // heads
    return tuple(
        head * width + index
        for head in range(heads)
        for index in _top(scores[head * width : (head + 1) * width], keep)
    )


def choose(importance: WidthImportance, *, dense: Geometry, sizes: Geometry) -> WidthCut:
    """Keep the most important groups and channels of every block, and hidden entries."""
    return WidthCut(
        head_channels=tuple(
            _per_head(scores, heads=dense.heads, keep=sizes.head_dim)
            for scores in importance.head_channels
        )
        if sizes.head_dim != dense.head_dim
        else None,
        groups=tuple(_top(scores, sizes.kv_heads) for scores in importance.groups)
        if sizes.kv_heads != dense.kv_heads
        else None,
        channels=tuple(_top(scores, sizes.intermediate) for scores in importance.channels)
        if sizes.intermediate != dense.intermediate
        else None,
        hidden=_top(importance.hidden, sizes.hidden) if sizes.hidden != dense.hidden else None,
    )


def width_prune(
    model: nn.Module,
    *,
    target: float,
    round_to: int,
    hidden: bool,
    batches: Sequence[Tensor],
    forward: Callable[[Tensor], Any],
) -> Shrunk:
    """Width-prune a Hugging Face model to remove about `target` of its parameters.

    Args:
        model: the `AutoModelFor...` model (left unchanged).
        target: fraction of the parameters to remove, in (0, 1).
        round_to: the MLP width and hidden size are multiples of it.
        hidden: also shrink the hidden size (embedding channels and all that reads them).
        batches: calibration batches, packed (N, 2, L) ids and masks.
        forward: runs one batch through `model` (the engine's adapter).

    With `hidden` on a family whose head size follows the hidden size (BERT), every head also
    keeps hidden'/heads of its channels, the most important by their output.

    Raises:
        UnsupportedArchitecture: an unsupported model type.
    """
    family = family_of(model)
    config: Any = model.config
    dense = geometry_of(config)
    shapes = meta_state(model)
    sizes, fraction = solve_sizes(
        dense=dense,
        target=target,
        removed=lambda candidate: removed_fraction_of(
            model, family=family, dense=dense, sizes=candidate, state=shapes
        ),
        prune_heads=family.grouped_heads,
        round_to=round_to,
        hidden=hidden,
        heads_divide_hidden=family.heads_divide_hidden,
        attention_follows_hidden=family.attention_follows_hidden,
    )
    importance = width_importance(
        model, family=family, geometry=dense, batches=batches, forward=forward
    )
    cut = choose(importance, dense=dense, sizes=sizes)
    state = cut_width(model.state_dict(), model=model, family=family, dense=dense, cut=cut)
    new_config = rewrite_config(config, family=family, sizes=sizes)
    pruned = rebuild(model, config=new_config, state=state)
    details: dict[str, Any] = {
        "mode": "width",
        "family": family.name,
        "dense_sizes": asdict(dense),
        "pruned_sizes": asdict(sizes),
        "planned_removed_fraction": fraction,
        "uniform_sizes": True,
        "uniform_reason": f"the {family.name} config states one head count, one intermediate "
        "size and one hidden size for every layer: each block keeps as many heads and channels "
        "as the others (which ones is its own choice)",
    }
    if not family.grouped_heads:
        details["heads_kept_reason"] = (
            f"{family.name} derives the head size from hidden_size / num_attention_heads: "
            "fewer heads of the same size cannot be stated in its config, so the heads stay "
            "and the MLP carries the cut"
        )
    return Shrunk(model=pruned, details=details)
