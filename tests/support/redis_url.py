"""The Redis the integration tests use: 127.0.0.1:6379 unless ADAPRUNE_TEST_REDIS names another.

Each suite keeps to its own database number, so suites never flush each other's keys; a second
checkout running the suite at the same time points ADAPRUNE_TEST_REDIS at its own server.
"""

from __future__ import annotations

import os


def redis_test_url(database: int) -> str:
    """The URL of database `database` on the test Redis server."""
    base = os.environ.get("ADAPRUNE_TEST_REDIS", "redis://127.0.0.1:6379").rstrip("/")
    return f"{base}/{database}"
