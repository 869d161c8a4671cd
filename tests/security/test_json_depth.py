"""The nesting check that runs before any JSON parsing."""

from __future__ import annotations

import pytest

from service.middleware import MAX_JSON_DEPTH, json_depth


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b'"scalar"', 0),
        (b"{}", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'{"name": "[[[[[[{{{{"}', 1),
        (b'{"name": "quote \\" then [[[["}', 1),
        (b"[" * 5000, 5000),
    ],
)
def test_json_depth_counts_brackets_outside_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_a_real_spec_is_far_below_the_limit() -> None:
    spec = b'{"model": {"arch": "mlp", "kwargs": {"hidden": [64, 32]}}, "prune": {"schedule": {}}}'
    assert json_depth(spec) < MAX_JSON_DEPTH // 4
