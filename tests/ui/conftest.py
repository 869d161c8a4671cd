"""A real deployment for the web page's tests: SQLite migrated by Alembic, Redis (db 13), file
storage, the API as a uvicorn process and one `adaprune worker` process."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from service.auth import create_key
from service.db.migrate import upgrade
from service.store import JobStore
from tests.support.deployment import Deployment, forget_queue, require_redis, service_env
from tests.support.processes import flushed_redis, free_port, http_text, running, wait_until
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(13)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """API and worker processes sharing a fresh SQLite database, ready to take jobs."""
    root = tmp_path_factory.mktemp("ui")
    require_redis(REDIS_URL)
    with ExitStack() as stack:
        stack.enter_context(flushed_redis(REDIS_URL))
        database_url = f"sqlite:///{root / 'adaprune.db'}"
        upgrade(database_url)
        store = JobStore.from_url(database_url)
        try:
            with store.tx() as session:
                key = create_key(session, "acme")
        finally:
            store.engine.dispose()
        queue = f"ui-{free_port()}"
        # Registered before the processes start, so it runs after they stopped.
        stack.callback(forget_queue, queue, REDIS_URL)
        env = dict(
            service_env(root=root, database_url=database_url, queue=queue), REDIS_URL=REDIS_URL
        )
        api_port, metrics_port = free_port(), free_port()
        api_log, worker_log = root / "api.log", root / "worker.log"
        cli = [sys.executable, "-m", "cli"]
        api = stack.enter_context(
            running(
                [
                    *cli,
                    "api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(api_port),
                    "--log-level",
                    "warning",
                ],
                log=api_log,
                env=env,
            )
        )
        worker = stack.enter_context(
            running(
                [*cli, "worker", "--queue", queue, "--quiet"],
                log=worker_log,
                env=dict(env, ADAPRUNE_METRICS_PORT=str(metrics_port)),
                stop_signal=signal.SIGQUIT,
            )
        )
        alive = [(api, api_log), (worker, worker_log)]
        wait_until(
            lambda: http_text(f"http://127.0.0.1:{api_port}/readyz"),
            what="ready API",
            timeout_s=60,
            alive=alive,
        )
        wait_until(
            lambda: http_text(f"http://127.0.0.1:{metrics_port}/metrics"),
            what="worker metrics endpoint",
            timeout_s=90,
            alive=alive,
        )
        yield Deployment(
            root=root,
            database_url=database_url,
            queue=queue,
            api_port=api_port,
            worker_metrics_port=metrics_port,
            key=key,
            api_log=api_log,
            worker_log=worker_log,
        )
