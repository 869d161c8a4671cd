"""Fixtures for the worker tests: real Redis (db 14), SQLite in a temp dir, file:// storage,
the API in-process (TestClient) and real `adaprune worker` processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.db.models import Job
from service.main import create_app
from service.queue import JobQueue
from service.settings import ApiSettings
from service.store import JobStore
from tests.support.processes import flushed_redis, free_port
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(14)
ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
HEARTBEAT_S = 1.0
MAX_ATTEMPTS = 3
FINAL = ("succeeded", "failed", "cancelled")


@dataclass
class Service:
    """One isolated deployment: database, storage, queue, API client and worker environment.

    file:// references may name files under `root / "data"`.
    """

    root: Path
    database_url: str
    artifact_dir: Path
    queue: str
    store: JobStore
    api: TestClient
    key: str
    tenant_id: int
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_port: int = 0

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Adaprune-Queue": self.queue}

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.api.post("/v1/jobs", json=spec, headers=self.headers)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> Job:
        job = self.store.load_job(job_id)
        assert job is not None
        return job

    def wait(self, job_id: str, until: Callable[[Job], bool], *, timeout_s: float = 60.0) -> Job:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if until(job):
                return job
            for worker in self.workers:
                assert worker.poll() is None or worker.returncode == -signal.SIGKILL, (
                    f"worker exited with {worker.returncode}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job.state} after {timeout_s}s")
            time.sleep(0.1)

    def wait_final(self, job_id: str, *, timeout_s: float = 60.0) -> Job:
        return self.wait(job_id, lambda job: job.state in FINAL, timeout_s=timeout_s)

    def start_worker(self, *, metrics_port: int = 0) -> subprocess.Popen[bytes]:
        env = dict(self.env, ADAPRUNE_METRICS_PORT=str(metrics_port))
        log = (self.root / f"worker-{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queue", self.queue],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def enqueue(self, job_id: str) -> None:
        sender = JobQueue(REDIS_URL)
        try:
            sender.enqueue(job_id, self.queue)
        finally:
            sender.close()

    def worker_logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.root.glob("worker-*.log"))
        )


def wait_for_metrics(port: int, *, timeout_s: float = 30.0) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            if response.status_code == 200:
                return response.text
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"no metrics on port {port} after {timeout_s}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def redis_db() -> Iterator[redis.Redis]:
    with flushed_redis(REDIS_URL) as client:
        yield client


@contextmanager
def _service(root: Path) -> Iterator[Service]:
    root.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite:///{root / 'adaprune.db'}"
    artifact_dir = root / "artifacts"
    upgrade(database_url)
    store = JobStore.from_url(database_url)
    with store.tx() as session:
        key = create_key(session, "acme")
    with store.tx() as session:
        tenant_id = get_or_create_tenant(session, "acme").id
    queue = f"t-{secrets.token_hex(4)}"
    settings = ApiSettings(
        home=root / "home",
        database_url_env=database_url,
        redis_url_env=REDIS_URL,
        artifact_url_env=f"file://{artifact_dir}",
        heartbeat_s=HEARTBEAT_S,
        max_attempts=MAX_ATTEMPTS,
        served_queues=(queue,),
        allowed_file_roots=(str(root / "data"),),
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADAPRUNE_HOME": str(root / "home"),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "ARTIFACT_URL": f"file://{artifact_dir}",
        "ADAPRUNE_HEARTBEAT_S": str(HEARTBEAT_S),
        "ADAPRUNE_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "ADAPRUNE_ALLOWED_FILE_ROOTS": str(root / "data"),
        "ADAPRUNE_DEVICE": "cpu",
        "OMP_NUM_THREADS": "1",
    }
    service = Service(
        root=root,
        database_url=database_url,
        artifact_dir=artifact_dir,
        queue=queue,
        store=store,
        api=TestClient(create_app(settings)),
        key=key,
        tenant_id=tenant_id,
        env=env,
    )
    try:
        yield service
    finally:
        for worker in service.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGQUIT)
        for worker in service.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        service.api.close()
        store.engine.dispose()


@pytest.fixture(scope="module")
def shared(redis_db: redis.Redis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A deployment with one worker process, shared by the tests of a module."""
    with _service(tmp_path_factory.mktemp("shared")) as service:
        port = free_port()
        service.start_worker(metrics_port=port)
        wait_for_metrics(port)
        service.metrics_port = port
        yield service


@pytest.fixture
def fresh(redis_db: redis.Redis, tmp_path: Path) -> Iterator[Service]:
    """A deployment of its own with no worker yet (the test starts and kills them)."""
    with _service(tmp_path) as service:
        yield service
