"""The idempotency digest of a submission: the request as the client sent it.

The digest covers the parsed JSON body before the spec fills in its defaults, and the queue
header as sent. A retry with the same key and the same body therefore matches the first job
whatever defaults the server adds or changes in between (a deploy between the two calls).
Writing out a value the server would have filled in (`"seed": 0`) makes a different body and
a different digest: the server cannot tell a written default from a changed intent once the
default itself may change.

Canonical form: keys sorted, no insignificant whitespace, strings as UTF-8, and a number
written the same way whether the client sent `1` or `1.0` (JSON numbers have no type).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

# Floats above this are not all integers exactly; they keep their float spelling.
_EXACT_INT = 2**53


def canonical(value: Any) -> Any:
    """`value` (parsed JSON) with integral floats written as integers, recursively."""
    if isinstance(value, dict):
        return {key: canonical(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < _EXACT_INT:
        return int(value)
    return value


def body_digest(body: Any, *, queue: str | None) -> str:
    """sha256 (hex) of the canonical JSON of a submission's parsed body and its queue header.

    Args:
        body: the request body as parsed JSON, before any validation or defaults.
        queue: the `X-Adaprune-Queue` header as sent (None when absent, not the default queue).
    """
    text = json.dumps(
        {"body": canonical(body), "queue": queue},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()
