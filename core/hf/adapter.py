"""The module the engine trains, evaluates and prunes in place of a Hugging Face model.

The engine feeds one tensor per batch; a text batch packs token ids and attention mask as
(N, 2, L) int64 (`pack`), which the adapter splits into `input_ids` and `attention_mask`. It
also accepts a dict batch or the two tensors, and returns the logits alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from torch import Tensor, nn


def pack(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """(N, L) ids and mask -> one (N, 2, L) int64 array, the engine's feature array."""
    return np.ascontiguousarray(np.stack([input_ids, attention_mask], axis=1), dtype=np.int64)


class HFAdapter(nn.Module):
    """A Hugging Face model behind the engine's interface: features in, logits out.

    Args:
        model: the `AutoModelFor...` model; its parameters appear under `hf.`.
        kind: the task kind it was loaded for (recorded in the artifact).
        excluded: module paths (under `hf.`) pruning leaves alone, with the reason.
        forward_kwargs: passed to every forward call (e.g. use_cache=False for a causal LM).
        source: the directory it was loaded from (its tokenizer goes into the artifact).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        kind: str,
        excluded: Mapping[str, str],
        forward_kwargs: Mapping[str, Any],
        source: str | None = None,
    ) -> None:
        super().__init__()
        self.hf = model
        self.kind = kind
        self.prune_excluded = {f"hf.{name}": reason for name, reason in excluded.items()}
        self.forward_kwargs = dict(forward_kwargs)
        self.source = source

    def forward(
        self, batch: Tensor | Mapping[str, Tensor], attention_mask: Tensor | None = None
    ) -> Tensor:
        """Logits for a packed (N, 2, L) batch, a dict batch, or input_ids with a mask."""
        if isinstance(batch, Mapping):
            input_ids = batch["input_ids"]
            attention_mask = batch.get("attention_mask")
        elif attention_mask is not None or batch.dim() == 2:
            input_ids = batch
        else:
            input_ids, attention_mask = batch[:, 0], batch[:, 1]
        output = self.hf(input_ids=input_ids, attention_mask=attention_mask, **self.forward_kwargs)
        logits: Tensor = output.logits
        return logits
