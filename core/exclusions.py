"""Modules a model asks pruning to leave alone (a Hugging Face model's task head), with why."""

from __future__ import annotations

from torch import nn

# a model may name modules pruning leaves alone: {module path: reason} in this attribute
EXCLUDED_ATTRIBUTE = "prune_excluded"


def excluded_modules(model: nn.Module) -> dict[str, str]:
    """The modules `model` asks pruning to leave alone (and everything under them), with why."""
    excluded = getattr(model, EXCLUDED_ATTRIBUTE, None)
    return dict(excluded) if isinstance(excluded, dict) else {}


def exclusion_of(name: str, excluded: dict[str, str]) -> str | None:
    """The reason module `name` is excluded (it or a module above it is listed), else None."""
    for prefix, reason in excluded.items():
        if name == prefix or name.startswith(f"{prefix}."):
            return reason
    return None
