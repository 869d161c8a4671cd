"""A real deployment for the API benchmarks: uvicorn and worker subprocesses, real Redis and a
database (SQLite file or a fresh PostgreSQL database), file:// artifacts."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import update

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.db.models import Job
from service.store import JobStore

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379/10"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FINAL = ("succeeded", "failed", "cancelled")
DEBUG_LAUNCHER = (
    "import logging, sys; logging.basicConfig(level=logging.DEBUG); "
    "from cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tiny_job(*, name: str = "tiny", **prune: Any) -> dict[str, Any]:
    """A job that runs in about a second: digits, the built-in MLP, one oneshot magnitude step."""
    return {
        "name": name,
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {
            "target_sparsity": 0.5,
            "criterion": "magnitude",
            "schedule": {"kind": "oneshot", "steps": 1},
            **prune,
        },
        "finetune": {"pretrain_epochs": 1, "epochs_per_step": 0, "final_epochs": 0},
    }


@dataclass
class Deployment:
    """API and workers on one database, one Redis db and one queue."""

    root: Path
    database_url: str
    queue: str
    store: JobStore
    env: dict[str, str]
    url: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def key(self, tenant: str, *, max_active: int | None = None) -> str:
        """A new API key for `tenant`, whose active-job cap is set to `max_active`."""
        with self.store.tx() as session:
            key = create_key(session, tenant)
            get_or_create_tenant(session, tenant).max_active_jobs = max_active
        return key

    def start_api(self, *, log_level: str = "warning") -> str:
        """Start `adaprune api` on a free port and wait for /readyz; returns its base URL.

        With log_level "debug" every logger of the process (root included) logs at DEBUG to
        `api.log`, uvicorn's access log too.
        """
        port = free_port()
        log = (self.root / "api.log").open("ab")
        launcher = ["-m", "cli"]
        if log_level == "debug":
            launcher = ["-c", DEBUG_LAUNCHER]
        arguments = ["api", "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level]
        process = subprocess.Popen(
            [sys.executable, *launcher, *arguments],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the API exited with {process.returncode}; see {log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the API did not become ready in 60 s")

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start one `adaprune worker` process on the deployment's queue."""
        log = (self.root / f"worker-{len(self.workers)}.log").open("ab")
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queue", self.queue, "--quiet"],
            cwd=ROOT,
            env=dict(self.env, ADAPRUNE_METRICS_PORT="0"),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        self.processes.append(worker)
        return worker

    def discard_queued(self) -> int:
        """Cancel every queued job in the database and empty the queue; returns how many."""
        with self.store.tx() as session:
            result = session.execute(
                update(Job).where(Job.state == "queued").values(state="cancelled")
            )
        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            client.delete(self.queue)
        finally:
            client.close()
        return int(result.rowcount)  # type: ignore[attr-defined]

    def stop_workers(self) -> None:
        """Stop every worker (SIGQUIT: at once) and wait for them."""
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGQUIT)
        for worker in self.workers:
            _reap(worker)
            self.processes.remove(worker)
        self.workers.clear()


def _reap(process: subprocess.Popen[bytes]) -> None:
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def _database(backend: str, root: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{root / 'adaprune.db'}"
        return
    import psycopg
    from psycopg import sql

    name = f"adaprune_bench_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def deployment(
    root: Path, *, backend: str = "sqlite", redis_url: str = REDIS_URL, **env: str
) -> Iterator[Deployment]:
    """A fresh deployment under `root` on `backend` ("sqlite" or "postgresql").

    Args:
        root: a scratch directory (database file, artifacts, logs).
        backend: which results store to use.
        redis_url: the Redis database (flushed before and after).
        **env: extra environment variables for the API and worker processes.

    Yields:
        The deployment; every process it started is stopped on exit and its Redis db flushed.
    """
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"backend {backend!r} must be 'sqlite' or 'postgresql'")
    root.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    with _database(backend, root) as database_url:
        upgrade(database_url)
        store = JobStore.from_url(database_url)
        queue = f"bench-{secrets.token_hex(4)}"
        full_env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ADAPRUNE_HOME": str(root / "home"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ARTIFACT_URL": f"file://{root / 'artifacts'}",
            "ADAPRUNE_DEFAULT_QUEUE": queue,
            "ADAPRUNE_DEVICE": "cpu",
            "ADAPRUNE_HEARTBEAT_S": "2",
            "OMP_NUM_THREADS": "1",
            **env,
        }
        deploy = Deployment(
            root=root, database_url=database_url, queue=queue, store=store, env=full_env
        )
        try:
            yield deploy
        finally:
            for process in deploy.processes:
                if process.poll() is None:
                    process.send_signal(
                        signal.SIGQUIT if process in deploy.workers else signal.SIGTERM
                    )
            for process in deploy.processes:
                _reap(process)
            store.engine.dispose()
            client.flushdb()
            client.close()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
