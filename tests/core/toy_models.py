"""Tiny user-style model factories that the entry-point tests import."""

from __future__ import annotations

from torch import nn


def tiny_mlp(*, features: int = 4, hidden: int = 8, classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def not_a_model() -> str:
    return "a string"


def broken_factory() -> nn.Module:
    raise RuntimeError("factory exploded")


NOT_CALLABLE = 3
