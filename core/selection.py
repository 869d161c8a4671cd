"""Global mask selection: the k lowest scores over many layers without joining them all.

Small pools are cut by one topk over joined integer keys; larger ones by radix selection over
the layers one at a time, with water-filling for the per-layer floors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor


def layer_floor(*, numel: int, min_density: float) -> int:
    """Fewest weights a layer keeps: max(1, ceil(min_density * numel)), at most numel."""
    # The small epsilon stops float noise (0.07 * 100 = 7.000000000000001) from adding a weight.
    return min(numel, max(1, math.ceil(min_density * numel - 1e-9)))


def effective_scores(score: Tensor, kept: Tensor) -> Tensor:
    """Flat float scores where already-pruned weights (and NaN scores) rank lowest (-inf)."""
    # + 0.0 turns -0.0 into +0.0, so the two zeros tie as they do in float comparison
    flat = score.detach().reshape(-1).float() + 0.0
    drop = ~kept.reshape(-1) | torch.isnan(flat)
    return flat.masked_fill(drop, float("-inf"))


def _sortable_keys(flat: Tensor) -> Tensor:
    """int64 keys ordered exactly like the float32 values (IEEE-754 bits, negatives flipped)."""
    bits = flat.contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


_RADIX_BITS = 8
_KEY_OFFSET = 2**31  # _sortable_keys + offset lies in [0, 2**32): unsigned digits
# Pools up to this many keys are joined (as int32, 64 MiB at most) and cut with one topk: on a
# GPU a small model's selection is bound by kernel launches and host syncs, not by bytes.
_JOINED_KEYS_MAX = 2**24


def _kth_lowest_key(
    keys_of: Callable[[str], Tensor], names: Sequence[str], k: int, *, size: int
) -> int:
    """The k-th lowest key (1-based) over the named layers' keys, `size` of them in all.

    A pool of at most `_JOINED_KEYS_MAX` keys is joined and cut with torch.topk over the smaller
    side. A larger one is radix-selected: four passes of 8 bits, most significant first, each
    histogramming the digit of the keys that share the prefix found so far (the others land in a
    spill bin), layer by layer on the device; the bucket holding the k-th key extends the prefix.
    Extra memory: a few copies of the largest layer, and one host sync per pass.
    """
    if size <= _JOINED_KEYS_MAX or len(names) == 1:
        joined = torch.cat([keys_of(name).to(torch.int32) for name in names])
        if k <= size - k + 1:
            return int(torch.topk(joined, k, largest=False).values.max())
        return int(torch.topk(joined, size - k + 1, largest=True).values.min())
    prefix = 0
    for shift in range(32 - _RADIX_BITS, -1, -_RADIX_BITS):
        histogram: Tensor | None = None
        for name in names:
            keys = keys_of(name) + _KEY_OFFSET
            digit = (keys >> shift) & (2**_RADIX_BITS - 1)
            if shift < 32 - _RADIX_BITS:
                digit = torch.where(
                    (keys >> (shift + _RADIX_BITS)) == prefix, digit, 2**_RADIX_BITS
                )
            counts = torch.bincount(digit, minlength=2**_RADIX_BITS + 1)
            histogram = counts if histogram is None else histogram + counts
        assert histogram is not None
        cumulative = histogram[: 2**_RADIX_BITS].cumsum(0).cpu()
        bucket = int(torch.searchsorted(cumulative, k))
        k -= int(cumulative[bucket - 1]) if bucket > 0 else 0
        prefix = (prefix << _RADIX_BITS) | bucket
    return prefix - _KEY_OFFSET


def global_masks(
    scores: Mapping[str, Tensor], *, kept: Mapping[str, Tensor], sparsity: float, min_density: float
) -> dict[str, Tensor]:
    """Global selection that never joins a large model's scores into one tensor.

    With caps c_l (what each layer may lose above its floor), the cut is the smallest key T with
    g(T) = sum_l min(c_l, #{key_l <= T}) >= k, and the k pruned weights are the keys below T plus
    ties at T. T is found by water-filling: the k-th lowest key over the uncapped layers (radix
    selection, `_kth_lowest_key`) is a lower bound on T; a layer holding more than its cap at or
    below that bound holds more at T too, so it gives exactly its cap and leaves the pool, and the
    rest is selected again until no layer overflows. Past the joined-keys limit each pass reads
    one layer at a time, so the extra memory is a few copies of the largest layer; host syncs are
    a handful per call, not per layer.
    """
    names = list(scores)
    if not names:
        return {}

    def keys_of(name: str) -> Tensor:
        return _sortable_keys(effective_scores(scores[name], kept[name]))

    numel = {name: scores[name].numel() for name in names}
    kept_counts = torch.stack([kept[name].sum() for name in names]).tolist()
    layer_already = {name: numel[name] - int(c) for name, c in zip(names, kept_counts, strict=True)}
    total = sum(numel.values())
    target = round(sparsity * total)
    if target <= sum(layer_already.values()):
        return {name: kept[name].clone() for name in names}
    caps = {
        name: max(numel[name] - layer_floor(numel=numel[name], min_density=min_density), already)
        for name, already in layer_already.items()
    }
    target = min(target, sum(caps.values()))

    full: set[str] = set()  # layers that give exactly their cap
    cut: int | None = None
    counts: list[list[int]] = []  # per layer: keys below the cut, keys at it
    while True:
        remaining = target - sum(caps[name] for name in full)
        pool = [name for name in names if name not in full]
        if remaining <= 0 or not pool:
            break  # the cut and its counts from the last round stand
        bound = _kth_lowest_key(keys_of, pool, remaining, size=sum(numel[name] for name in pool))
        cut = bound if cut is None else max(cut, bound)
        counts = torch.stack(
            [torch.stack([(k < cut).sum(), (k == cut).sum()]) for k in map(keys_of, names)]
        ).tolist()
        overflowing = {
            name
            for name, (below, ties) in zip(names, counts, strict=True)
            if name not in full and below + ties > caps[name]
        }
        if not overflowing:
            break
        full |= overflowing
    assert cut is not None

    room = target - sum(min(caps[n], below) for n, (below, _) in zip(names, counts, strict=True))
    masks: dict[str, Tensor] = {}
    for name, (count, tie_count) in zip(names, counts, strict=True):
        flat = effective_scores(scores[name], kept[name])
        if count >= caps[name]:
            prune = select_lowest(flat, caps[name])
        else:
            keys = _sortable_keys(flat)
            ties = keys == cut
            # ties at the cut go to the earlier layer, then the lower index, within the cap
            take = min(room, caps[name] - count, tie_count)
            prune = (keys < cut) | (ties & (torch.cumsum(ties.long(), dim=0) <= take))
            room -= take
        masks[name] = ~prune.view(scores[name].shape)
    return masks


def select_lowest(values: Tensor, count: int) -> Tensor:
    """Bool selector of exactly `count` lowest values of a flat tensor; ties at the cut go to
    the lowest index. The cut value comes from torch.topk over the smaller side of the split.
    """
    size = values.numel()
    if count <= 0 or count >= size:
        return torch.full_like(values, count >= size and size > 0, dtype=torch.bool)
    if count <= size - count:
        threshold = torch.topk(values, count, largest=False).values.max()
    else:
        # The (count + 1)-th lowest value: everything below it is selected, nothing at it
        # unless it ties with the count-th lowest, which the room count below handles.
        threshold = torch.topk(values, size - count, largest=True).values.min()
    below = values < threshold
    at = values == threshold
    room = count - int(below.sum().item())
    return below | (at & (torch.cumsum(at.long(), dim=0) <= room))
