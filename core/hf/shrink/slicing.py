"""Cutting a Hugging Face model's tensors down to kept heads, channels, hidden entries or blocks,
rewriting its config to the new sizes and rebuilding the model class from that config.

The model is rebuilt with `type(model)(config)` and given the cut tensors, so what runs here is
what `from_pretrained` builds from the saved config in any other process.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import PruningError
from core.hf.shrink.families import Family, base_prefix


@dataclass(frozen=True)
class Geometry:
    """The sizes a config states: blocks, query and key/value heads, head size, MLP, hidden."""

    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    hidden: int

    @property
    def queries_per_group(self) -> int:
        return self.heads // self.kv_heads


def geometry_of(config: Any) -> Geometry:
    """The sizes of a BERT, Llama or Qwen2 config (`head_dim` implied when not stated)."""
    heads = int(config.num_attention_heads)
    hidden = int(config.hidden_size)
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return Geometry(
        layers=int(config.num_hidden_layers),
        heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        intermediate=int(config.intermediate_size),
        hidden=hidden,
    )


@dataclass(frozen=True)
class WidthCut:
    """What width pruning keeps: key/value groups and MLP channels per block (ascending
    indices), and the hidden entries; None leaves that dimension whole. `head_channels`: per
    block, the query/key/value rows kept when every head keeps fewer channels (a family whose
    head size follows the hidden size), the same number in each head."""

    groups: tuple[tuple[int, ...], ...] | None = None
    channels: tuple[tuple[int, ...], ...] | None = None
    hidden: tuple[int, ...] | None = None
    head_channels: tuple[tuple[int, ...], ...] | None = None

    def sizes(self, dense: Geometry) -> Geometry:
        """The geometry after the cut."""
        kv = len(self.groups[0]) if self.groups else dense.kv_heads
        head_dim = dense.head_dim
        if self.head_channels is not None:
            head_dim = len(self.head_channels[0]) // dense.heads
        return replace(
            dense,
            kv_heads=kv,
            heads=kv * dense.queries_per_group,
            head_dim=head_dim,
            intermediate=len(self.channels[0]) if self.channels else dense.intermediate,
            hidden=len(self.hidden) if self.hidden is not None else dense.hidden,
        )


def _take(tensor: Tensor, dim: int, keep: Sequence[int]) -> Tensor:
    index = torch.as_tensor(list(keep), dtype=torch.long, device=tensor.device)
    return tensor.index_select(dim, index)


def _cut(state: dict[str, Tensor], name: str, dim: int, keep: Sequence[int]) -> None:
    if name in state:
        state[name] = _take(state[name], dim, keep)


def _head_rows(groups: Sequence[int], *, per_group: int, head_dim: int) -> list[int]:
    """Rows of a projection's output for the heads of the kept groups (per_group heads each)."""
    return [
        (group * per_group + head) * head_dim + offset
        for group in groups
        for head in range(per_group)
        for offset in range(head_dim)
    ]


def cut_width(
    state: Mapping[str, Tensor], *, model: nn.Module, family: Family, dense: Geometry, cut: WidthCut
) -> dict[str, Tensor]:
    """The state dict with `cut` applied (tensors indexed, none modified in place)."""
    out = dict(state)
    base = base_prefix(model)
    for block in range(dense.layers):
        at = f"{base}{family.blocks}.{block}."
        if cut.groups is not None:
            groups = cut.groups[block]
            query = _head_rows(groups, per_group=dense.queries_per_group, head_dim=dense.head_dim)
            kv = _head_rows(groups, per_group=1, head_dim=dense.head_dim)
            for path, rows in ((family.query, query), (family.key, kv), (family.value, kv)):
                _cut(out, f"{at}{path}.weight", 0, rows)
                _cut(out, f"{at}{path}.bias", 0, rows)
            _cut(out, f"{at}{family.out}.weight", 1, query)
        if cut.head_channels is not None:
            kept = cut.head_channels[block]
            # q.k over fewer channels: q is scaled by sqrt(d'/d) so that softmax(q.k/sqrt(d'))
            # keeps the scale of softmax(q.k/sqrt(d)) the dense model was trained with
            scale = (len(kept) / (dense.heads * dense.head_dim)) ** 0.5
            for path in (family.query, family.key, family.value):
                _cut(out, f"{at}{path}.weight", 0, kept)
                _cut(out, f"{at}{path}.bias", 0, kept)
            for part in ("weight", "bias"):
                name = f"{at}{family.query}.{part}"
                if name in out:
                    out[name] = out[name] * scale
            _cut(out, f"{at}{family.out}.weight", 1, kept)
        if cut.channels is not None:
            channels = cut.channels[block]
            for path in family.mlp_in:
                _cut(out, f"{at}{path}.weight", 0, channels)
                _cut(out, f"{at}{path}.bias", 0, channels)
            _cut(out, f"{at}{family.mlp_out}.weight", 1, channels)
    if cut.hidden is not None:
        _cut_hidden(out, model=model, family=family, dense=dense, keep=cut.hidden)
    return out


def _cut_hidden(
    state: dict[str, Tensor],
    *,
    model: nn.Module,
    family: Family,
    dense: Geometry,
    keep: Sequence[int],
) -> None:
    base = base_prefix(model)
    for patterns, dim in (
        (family.hidden_columns, 1),
        (family.hidden_rows, 0),
        (family.hidden_vectors, 0),
    ):
        for pattern in patterns:
            names = {base + pattern.format(i=block) for block in range(dense.layers)}
            for name in names:
                _cut(state, name, dim, keep)
    if base:
        # the task head reads the hidden state: its input columns go, its outputs stay
        for name, tensor in list(state.items()):
            if not name.startswith(base) and tensor.dim() == 2 and tensor.shape[1] == dense.hidden:
                state[name] = _take(tensor, 1, keep)


def cut_depth(
    state: Mapping[str, Tensor], *, model: nn.Module, family: Family, keep: Sequence[int]
) -> dict[str, Tensor]:
    """The state dict with only the blocks in `keep` (ascending), renumbered from 0."""
    at = f"{base_prefix(model)}{family.blocks}."
    number = {old: new for new, old in enumerate(keep)}
    out: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if not name.startswith(at):
            out[name] = tensor
            continue
        index, _, rest = name[len(at) :].partition(".")
        if int(index) in number:
            out[f"{at}{number[int(index)]}.{rest}"] = tensor
    return out


def rewrite_config(
    config: Any, *, family: Family, sizes: Geometry, blocks: Sequence[int] | None = None
) -> Any:
    """A copy of `config` stating `sizes`; `blocks` (kept block indices) also cuts the
    per-block lists (`layer_types`). `head_dim` is written out whenever the config has one."""
    new = copy.deepcopy(config)
    new.num_hidden_layers = sizes.layers
    new.num_attention_heads = sizes.heads
    new.intermediate_size = sizes.intermediate
    new.hidden_size = sizes.hidden
    if family.grouped_heads:
        new.num_key_value_heads = sizes.kv_heads
        new.head_dim = sizes.head_dim
    if blocks is not None:
        for field in family.per_block_config:
            values = getattr(new, field, None)
            if isinstance(values, list):
                setattr(new, field, [values[index] for index in blocks])
    return new


def rebuild(model: nn.Module, *, config: Any, state: Mapping[str, Tensor]) -> nn.Module:
    """`type(model)(config)` holding `state`, in the model's dtype, on its device, eval mode.

    Raises:
        PruningError: the cut tensors do not fit the rebuilt model (a family layout gap).
    """
    reference = next(model.parameters())
    validate = getattr(config, "validate", None)
    try:
        if callable(validate):
            validate()
        new: nn.Module = type(model)(config)
    except (ValueError, TypeError) as error:
        raise PruningError(
            f"the pruned sizes make no valid {type(model).__name__}: {error}"
        ) from error
    try:
        new.load_state_dict(dict(state), strict=True)
    except RuntimeError as error:
        raise PruningError(
            f"the pruned {type(model).__name__} does not take its cut weights: {error}"
        ) from error
    return new.to(dtype=reference.dtype, device=reference.device).eval()


@dataclass(frozen=True)
class Shrunk:
    """A pruned model and what the manifest says about the cut (sizes, choices, reasons)."""

    model: nn.Module
    details: dict[str, Any]


def parameter_names(model: nn.Module) -> list[str]:
    """The model's parameters by state-dict name, each shared tensor once (tied embeddings)."""
    return [name for name, _ in model.named_parameters()]


def meta_state(model: nn.Module) -> dict[str, Tensor]:
    """The model's state dict as shapes only (the `meta` device): cuts on it cost nothing."""
    return {
        name: torch.empty(tensor.shape, dtype=tensor.dtype, device="meta")
        for name, tensor in model.state_dict().items()
    }


def counted(state: Mapping[str, Tensor], names: Sequence[str]) -> int:
    """Entries of the named tensors of `state`."""
    return sum(state[name].numel() for name in names if name in state)
