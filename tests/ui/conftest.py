"""A real deployment for the web page's tests: SQLite migrated by Alembic, Redis (db 13), file
storage, the API as a uvicorn process and one `adaprune worker` process."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.deployment import Deployment, require_redis, start_deployment
from tests.support.processes import flushed_redis, free_port
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(13)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """API and worker processes sharing a fresh SQLite database, ready to take jobs."""
    root = tmp_path_factory.mktemp("ui")
    require_redis(REDIS_URL)
    with ExitStack() as stack:
        stack.enter_context(flushed_redis(REDIS_URL))
        yield start_deployment(
            stack,
            root=root,
            database_url=f"sqlite:///{root / 'adaprune.db'}",
            queue=f"ui-{free_port()}",
            redis_url=REDIS_URL,
        )
