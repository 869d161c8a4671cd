"""Calibration activations: capture the first block's inputs, then run blocks on them.

The first block's inputs (hidden states plus the keyword arguments the model passes it: the
attention mask, rotary position embeddings, ...) are caught by a forward pre-hook that raises
once it has them, so nothing after the embeddings runs. Every later block's inputs are the
previous block's outputs on these stored activations; only one set of them is kept. Each
batch's attention mask is kept beside its states: padding runs through the blocks with the
rest, but the layers' input statistics (Wanda's norms, SparseGPT's Hessian, OWL's outlier
ratios) count only the real tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import PruningError


class _Captured(PruningError):
    """Raised by the capture hook to stop the forward pass after the first block's inputs
    (caught by the capture itself; never leaves it)."""


def move(value: Any, device: torch.device) -> Any:
    """`value` with every tensor in it (through tuples, lists and dicts) on `device`."""
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(move(item, device) for item in value)
    if isinstance(value, list):
        return [move(item, device) for item in value]
    if isinstance(value, dict):
        return {key: move(item, device) for key, item in value.items()}
    return value


def as_batches(calibration: Sequence[Mapping[str, Tensor] | Tensor]) -> list[dict[str, Tensor]]:
    """Calibration batches as model keyword arguments (a bare tensor is `input_ids`)."""
    return [{"input_ids": item} if isinstance(item, Tensor) else dict(item) for item in calibration]


@dataclass
class BlockInputs:
    """One block's calibration inputs, one entry per batch: the hidden states, and the other
    arguments the model passed the block (positional `args` after the states, `kwargs`)."""

    hidden: list[Tensor]
    args: list[tuple[Any, ...]]
    kwargs: list[dict[str, Any]]
    # per batch, the (batch, seq) attention mask (True: a real token) or None: padding
    # positions are run through the blocks but are not calibration data
    keep: list[Tensor | None] = field(default_factory=list)

    def nbytes(self) -> int:
        """Bytes held by the hidden states (the keyword arguments are shared by every block)."""
        return sum(tensor.numel() * tensor.element_size() for tensor in self.hidden)


def capture_block_inputs(
    model: nn.Module,
    first_block: nn.Module,
    batches: Sequence[Mapping[str, Tensor] | Tensor],
    device: torch.device,
) -> BlockInputs:
    """Run `model` on each batch up to `first_block` and keep what it receives, on `device`.

    A batch is the model's keyword arguments ({"input_ids", "attention_mask"}) or, as a bare
    tensor, its `input_ids`.

    The model runs where its embeddings are (usually the CPU); only the captured tensors move.
    """
    hidden: list[Tensor] = []
    positional: list[tuple[Any, ...]] = []
    kwargs: list[dict[str, Any]] = []
    keep: list[Tensor | None] = []

    def hook(_module: nn.Module, args: tuple[Any, ...], given: dict[str, Any]) -> None:
        rest = dict(given)
        if args:
            states, extra = args[0], args[1:]
        else:
            states, extra = rest.pop("hidden_states"), ()
        hidden.append(states.detach().to(device))
        positional.append(move(tuple(extra), device))
        kwargs.append(move(rest, device))
        raise _Captured

    config: Any = getattr(model, "config", None)
    use_cache = getattr(config, "use_cache", None)
    if use_cache is not None:
        config.use_cache = False  # no key/value cache is built for calibration
    handle = first_block.register_forward_pre_hook(hook, with_kwargs=True)
    home = next(model.parameters()).device
    try:
        with torch.no_grad():
            for batch in as_batches(batches):
                try:
                    model(**{key: value.to(home) for key, value in batch.items()})
                except _Captured:
                    mask = batch.get("attention_mask")
                    keep.append(mask.to(device).bool() if mask is not None else None)
                    continue
                raise RuntimeError("the model's forward pass never reached its first block")
    finally:
        handle.remove()
        if use_cache is not None:
            config.use_cache = use_cache
    return BlockInputs(hidden=hidden, args=positional, kwargs=kwargs, keep=keep)


def run_block(
    block: nn.Module, states: Tensor, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Tensor:
    """The block's output hidden states for one batch (the first item when it returns a tuple)."""
    with torch.no_grad():
        output = block(states, *args, **kwargs)
    if isinstance(output, tuple):
        output = output[0]
    assert isinstance(output, Tensor)
    return output


def run_on_all(block: nn.Module, inputs: BlockInputs) -> list[Tensor]:
    """The block's outputs for every stored batch."""
    return [
        run_block(block, states, args, kwargs)
        for states, args, kwargs in zip(inputs.hidden, inputs.args, inputs.kwargs, strict=True)
    ]
