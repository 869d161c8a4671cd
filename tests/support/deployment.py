"""A real deployment for integration tests: a fresh PostgreSQL database migrated by Alembic,
Redis, file storage, the API as a uvicorn subprocess and one `adaprune worker` process."""

from __future__ import annotations

import os
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

from service.auth import create_key
from service.db.migrate import upgrade
from service.store import JobStore
from tests.support.processes import (
    ROOT,
    free_port,
    http_text,
    log_tail,
    running,
    unavailable,
    wait_until,
)
from tests.support.redis_url import redis_test_url

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = redis_test_url(12)
FINAL_STATES = ("succeeded", "failed", "cancelled")


def tiny_spec(*, steps: int = 3, epochs_per_step: int = 1, **extra: Any) -> dict[str, Any]:
    """A job of a few seconds: digits, the built-in MLP, a linear magnitude schedule."""
    return {
        "name": "tiny",
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {
            "target_sparsity": 0.6,
            "criterion": "magnitude",
            "schedule": {"kind": "linear", "steps": steps},
        },
        "finetune": {"pretrain_epochs": 2, "epochs_per_step": epochs_per_step, "final_epochs": 1},
        **extra,
    }


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on 127.0.0.1:5432, dropped when the block ends.

    Args:
        prefix: start of the database name (a random suffix follows).

    Yields:
        its SQLAlchemy URL (postgresql+psycopg://).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        unavailable("PostgreSQL at 127.0.0.1:5432")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def forget_queue(queue: str, url: str = REDIS_URL) -> None:
    """Delete the Redis keys of `queue` (its list and Celery's bindings of it)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        keys = [queue, *client.scan_iter(match=f"_kombu.binding*.{queue}")]
        client.delete(*keys)
    finally:
        client.close()


def require_redis(url: str = REDIS_URL) -> None:
    """Skip (locally) or fail (CI) when Redis does not answer at `url`."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        unavailable("Redis at 127.0.0.1:6379")
    finally:
        client.close()


@dataclass
class Deployment:
    """A running API and worker sharing one database, queue and artifact store."""

    root: Path
    database_url: str
    queue: str
    api_port: int
    worker_metrics_port: int
    key: str
    api_log: Path
    worker_log: Path

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_metrics_port}/metrics"

    def client(self) -> httpx.Client:
        """An HTTP client of the API, authenticated as the deployment's tenant."""
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=10
        )

    def logs(self) -> str:
        """The tails of the API and worker logs, for failure messages."""
        return f"--- api\n{log_tail(self.api_log)}\n--- worker\n{log_tail(self.worker_log)}"

    def run_job(self, spec: dict[str, Any], *, timeout_s: float = 120.0) -> dict[str, Any]:
        """Submit `spec` through the API and poll the API until the job is final.

        Returns:
            the final job as the API shows it.
        """
        with self.client() as client:
            response = client.post("/v1/jobs", json=spec)
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]

            def final() -> dict[str, Any] | None:
                job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
                return job if job["state"] in FINAL_STATES else None

            return wait_until(final, what=f"final state of job {job_id}", timeout_s=timeout_s)


def service_env(
    *, root: Path, database_url: str, queue: str, file_roots: Sequence[Path] = ()
) -> dict[str, str]:
    """The environment both processes share (service contract variables)."""
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADAPRUNE_HOME": str(root / "home"),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "ARTIFACT_URL": f"file://{root / 'artifacts'}",
        "ADAPRUNE_DEFAULT_QUEUE": queue,
        "ADAPRUNE_HEARTBEAT_S": "1",
        "ADAPRUNE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
        **({"ADAPRUNE_ALLOWED_FILE_ROOTS": ",".join(map(str, file_roots))} if file_roots else {}),
    }


@contextmanager
def deployment(root: Path, *, file_roots: Sequence[Path] = ()) -> Iterator[Deployment]:
    """Start a deployment on a fresh, migrated PostgreSQL database; stop everything afterwards.

    Args:
        root: an empty directory for logs, ADAPRUNE_HOME and artifacts.
        file_roots: directories a job's file:// references may name (none by default).

    Yields:
        the deployment, once the API is ready and the worker serves its metrics.
    """
    require_redis()
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database("adaprune_monitoring"))
        yield start_deployment(
            stack,
            root=root,
            database_url=database_url,
            queue=f"mon-{secrets.token_hex(4)}",
            file_roots=file_roots,
        )


def start_deployment(
    stack: ExitStack,
    *,
    root: Path,
    database_url: str,
    queue: str,
    redis_url: str = REDIS_URL,
    file_roots: Sequence[Path] = (),
) -> Deployment:
    """Migrate `database_url`, create tenant `acme`'s key, start the API and one worker.

    Everything started is stopped when `stack` closes, and `queue`'s Redis keys are deleted
    after that.

    Returns:
        the deployment, once the API is ready and the worker serves its metrics.
    """
    upgrade(database_url)
    store = JobStore.from_url(database_url)
    try:
        with store.tx() as session:
            key = create_key(session, "acme")
    finally:
        store.engine.dispose()
    # Registered before the processes start, so it runs after they stopped.
    stack.callback(forget_queue, queue, redis_url)
    env = dict(
        service_env(root=root, database_url=database_url, queue=queue, file_roots=file_roots),
        REDIS_URL=redis_url,
    )
    api_port, metrics_port = free_port(), free_port()
    api_log, worker_log = root / "api.log", root / "worker.log"
    cli = [sys.executable, "-m", "cli"]
    api = stack.enter_context(
        running(
            [*cli, "api", "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
            log=api_log,
            env=env,
        )
    )
    worker = stack.enter_context(
        running(
            [*cli, "worker", "--queue", queue, "--quiet"],
            log=worker_log,
            env=dict(env, ADAPRUNE_METRICS_PORT=str(metrics_port)),
            # stops at once (a drain); the job has finished by then.
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
    return Deployment(
        root=root,
        database_url=database_url,
        queue=queue,
        api_port=api_port,
        worker_metrics_port=metrics_port,
        key=key,
        api_log=api_log,
        worker_log=worker_log,
    )
