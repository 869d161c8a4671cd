"""Text task kinds: which `AutoModelFor...` class loads the model, how targets are made from
tokenised text, and which modules stay dense. Registered in `core.registries.TASK_KINDS`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import nn

from core.losses import IGNORE


def head_modules(model: nn.Module) -> list[str]:
    """The model's top-level modules with parameters outside its base model (the task head:
    classifier, score, lm_head), by name."""
    base = getattr(model, "base_model_prefix", "")
    return [
        name
        for name, module in model.named_children()
        if name != base and any(True for _ in module.parameters())
    ]


class TextClassification:
    """One label per text; the model is an `AutoModelForSequenceClassification`."""

    auto_class: ClassVar[str] = "AutoModelForSequenceClassification"
    labelled: ClassVar[bool] = True
    forward_kwargs: ClassVar[dict[str, Any]] = {}
    head_reason: ClassVar[str] = "classifier head: kept dense by default"

    def targets(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """The label ids, one per example."""
        return labels.astype(np.int64)


class CausalLM:
    """Next-token prediction; the model is an `AutoModelForCausalLM`.

    The target at position t is the token at t + 1; the last position and padding have none
    (IGNORE), so the loss is the next-token cross-entropy over real tokens.
    """

    auto_class: ClassVar[str] = "AutoModelForCausalLM"
    labelled: ClassVar[bool] = False
    forward_kwargs: ClassVar[dict[str, Any]] = {"use_cache": False}
    head_reason: ClassVar[str] = "language-model head: kept dense by default"

    def targets(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, labels: np.ndarray | None
    ) -> np.ndarray:
        """(N, L) next-token targets with IGNORE where there is no next real token."""
        targets = np.full_like(input_ids, IGNORE, dtype=np.int64)
        targets[:, :-1] = np.where(attention_mask[:, 1:] > 0, input_ids[:, 1:], IGNORE)
        return targets
