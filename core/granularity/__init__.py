"""Granularities: one class per way of pruning, built from the spec's name via the registry."""

from __future__ import annotations

from core.granularity.base import Granularity, SparsityPlan, count_params
from core.registries import GRANULARITIES

__all__ = ["Granularity", "SparsityPlan", "count_params", "make_granularity"]


def make_granularity(name: str) -> Granularity:
    """The granularity the spec calls `name` ("unstructured", "2:4", "channel", ...).

    Raises:
        ValueError: `name` is not registered (the message lists the allowed names).
    """
    granularity: Granularity = GRANULARITIES.resolve(name)(name)
    return granularity
