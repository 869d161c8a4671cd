"""The nesting check that runs before any JSON parsing."""

from __future__ import annotations

import time

import pytest

from service.jsonbody import NotStrictJson, check_strict_json
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
        (b'{"a": "\\\\", "b": [1]}', 2),
        (b'"unterminated [[[[', 0),
        (b'["\\"[[", [2]]', 2),
    ],
)
def test_json_depth_counts_brackets_outside_strings(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_the_depth_count_is_linear_in_the_body() -> None:
    # A 64 KiB body of `"\` took 28 s in the regular expression this count replaced.
    started = time.perf_counter()
    assert json_depth(b'"\\' * 32768) == 0
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize(
    ("body", "field", "names"),
    [
        (b'{"a": NaN}', "body", "NaN"),
        (b"[Infinity]", "body", "Infinity"),
        (b'{"a": {"b": [-Infinity]}}', "body", "-Infinity"),
        (b'{"model": {"kwargs": {"s": "x\\ud800"}}}', "model.kwargs.s", "\\ud800"),
        (b'{"m": ["ok", "\\udfff"]}', "m.1", "\\udfff"),
        (b'{"m": {"\\ud800": 1}}', "m.(key)", "\\ud800"),
    ],
)
def test_lenient_json_is_named(body: bytes, field: str, names: str) -> None:
    with pytest.raises(NotStrictJson) as refused:
        check_strict_json(body)
    assert refused.value.field == field
    assert names in refused.value.message


@pytest.mark.parametrize(
    "body", [b'{"emoji": "\\ud83d\\ude00", "n": 1e308}', b"not json", b'{"a": 1']
)
def test_strict_or_unparsable_json_passes_to_the_application(body: bytes) -> None:
    check_strict_json(body)


def test_a_real_spec_is_far_below_the_limit() -> None:
    spec = b'{"model": {"arch": "mlp", "kwargs": {"hidden": [64, 32]}}, "prune": {"schedule": {}}}'
    assert json_depth(spec) < MAX_JSON_DEPTH // 4
