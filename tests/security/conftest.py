"""Fixtures for the security tests: a live deployment (uvicorn subprocess with every logger at
DEBUG, real Redis db 12, SQLite, file:// artifacts) and a real worker process started on demand."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from bench.live import Deployment, deployment
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(12)
IN_CI = os.environ.get("CI", "").lower() == "true"
MAX_BODY_BYTES = 4096


def redis_or_skip() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        if IN_CI:
            pytest.fail("Redis at 127.0.0.1:6379 is not reachable")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable")
    finally:
        client.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One deployment per module; its data directory is `root / "data"` (an allowed root)."""
    redis_or_skip()
    root = tmp_path_factory.mktemp("live")
    data = root / "data"
    data.mkdir()
    with deployment(
        root,
        redis_url=REDIS_URL,
        ADAPRUNE_ALLOWED_FILE_ROOTS=str(data),
        ADAPRUNE_ALLOWED_ENTRYPOINTS="userpkg",
        ADAPRUNE_MAX_BODY_BYTES=str(MAX_BODY_BYTES),
        ADAPRUNE_TENANT_MAX_ACTIVE_JOBS="1000",
    ) as deploy:
        deploy.start_api(log_level="debug")
        yield deploy


def api_log(deploy: Deployment) -> str:
    return (deploy.root / "api.log").read_text(errors="replace")


def data_dir(deploy: Deployment) -> Path:
    return deploy.root / "data"
