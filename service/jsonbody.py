"""Checks on a raw JSON request body, each linear in its size: nesting depth and strictness.

Strict JSON is RFC 8259 text: no NaN/Infinity literals (Python's json module accepts them) and
no lone UTF-16 surrogates (`"\\ud800"` parses to a Python string that no UTF-8 encoder, database
driver or JSON response can write back).
"""

from __future__ import annotations

import json
from typing import Any

from core.contract.errors import AdapruneError, ErrorCode

_QUOTE, _BACKSLASH = 0x22, 0x5C
_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in `body` (0 for a scalar; strings are skipped).

    One pass over the bytes with a two-flag state (inside a string, after a backslash), so the
    cost is linear in `len(body)` whatever the body holds.

    Args:
        body: raw JSON text; it need not be valid JSON (an unterminated string runs to the end).

    Returns:
        The largest number of brackets open at once outside string literals.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif byte in _CLOSE:
            depth -= 1
    return deepest


class NotStrictJson(AdapruneError, ValueError):
    """The body parses as Python's JSON but is not strict JSON; `field` says where."""

    code: ErrorCode = "json_not_strict"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _refuse_constant(name: str) -> Any:
    raise NotStrictJson("body", f"{name} is not a JSON number; numbers must be finite")


def _lone_surrogate(text: str) -> str | None:
    for char in text:
        if 0xD800 <= ord(char) <= 0xDFFF:
            return f"\\u{ord(char):04x}"
    return None


def _check_text(text: str, field: str) -> None:
    # Paired surrogate escapes are joined by the parser; anything left in the range is lone.
    found = _lone_surrogate(text)
    if found is not None:
        raise NotStrictJson(field, f"lone UTF-16 surrogate {found} is not valid text")


def check_strict_json(body: bytes) -> None:
    """Raise NotStrictJson when `body` is JSON only to Python's lenient parser.

    Bodies that are not JSON at all (or not UTF-8) are left to the application's own parser,
    which answers them as it always has. Call after the depth check: parsing recurses.

    Raises:
        NotStrictJson: a NaN/Infinity literal, or a lone surrogate in a key or string, with the
            dotted path of the offending value (`model.kwargs.name`).
    """
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except NotStrictJson:
        raise
    except ValueError:
        return
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            _check_text(node, path or "body")
        elif isinstance(node, dict):
            for key, child in node.items():
                _check_text(key, f"{path}.(key)" if path else "(key)")
                stack.append((child, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            stack.extend(
                (child, f"{path}.{index}" if path else str(index))
                for index, child in enumerate(node)
            )


def printable_text(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD.

    Rows stored before strict JSON was enforced may hold such strings; this keeps them
    readable (listed, rendered as JSON) instead of failing every response that includes them.
    """
    if isinstance(value, str):
        return value if _lone_surrogate(value) is None else _replace_surrogates(value)
    if isinstance(value, dict):
        return {printable_text(key): printable_text(child) for key, child in value.items()}
    if isinstance(value, list):
        return [printable_text(child) for child in value]
    return value


def _replace_surrogates(text: str) -> str:
    return "".join("\ufffd" if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)
