"""One line saying what a job reached against what it asked, shared by `run` and `submit`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def asked_text(prune: Mapping[str, Any]) -> str:
    """The target as the spec gave it: "0.70", or "max (up to 0.99)"."""
    target = prune.get("target_sparsity")
    if target == "max":
        return f"max (up to {float(prune.get('max_sparsity', 0.99)):.2f})"
    return f"{float(target):.2f}" if isinstance(target, (int, float)) else str(target)


def outcome_line(result: Mapping[str, Any], prune: Mapping[str, Any]) -> str:
    """E.g. "target 0.70 reached: sparsity 0.70" or "target 0.70 missed: sparsity 0.66 (...)"."""
    reached = result.get("sparsity")
    shown = f"{float(reached):.4f}" if isinstance(reached, (int, float)) else "-"
    asked = asked_text(prune)
    if result.get("target_reached", True):
        return f"target {asked} reached: sparsity {shown}"
    reason = result.get("target_missed_reason") or result.get("stop_reason") or "unknown"
    return f"target {asked} missed: sparsity {shown} ({reason})"


def target_reached(result: Mapping[str, Any] | None) -> bool:
    """Whether a stored result says the target was reached (results before the field: True)."""
    return bool((result or {}).get("target_reached", True))
