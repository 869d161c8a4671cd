"""Real backing services for fault injection: a private redis-server, a private PostgreSQL
cluster, and a deployment (database, storage, API in-process, `adaprune worker` processes).

Shared by tests/faults/ (small counts) and bench/chaos.py (full counts); nothing here mocks
the system under test.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.db.models import Job
from service.main import create_app
from service.settings import ApiSettings
from service.storage import job_prefix
from service.store import JobStore
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
TENANT = "acme"
FINAL = ("succeeded", "failed", "cancelled")
ARTIFACT_NAMES = ["curve.png", "manifest.json", "steps.csv", "weights.safetensors"]


class ServiceMissing(RuntimeError):
    """A binary or service the fault runs need is not available on this machine."""


def fault_spec(
    *, steps: int = 3, epochs_per_step: int = 1, seed: int = 0, **extra: Any
) -> dict[str, Any]:
    """A job of about a second: breast_cancer, an MLP with one hidden layer of 16."""
    spec: dict[str, Any] = {
        "name": "fault",
        "model": {"arch": "mlp", "kwargs": {"hidden": [16]}},
        "task": {"dataset": "breast_cancer"},
        "prune": {
            "target_sparsity": 0.6,
            "criterion": "magnitude",
            "schedule": {"kind": "linear", "steps": steps},
        },
        "finetune": {
            "pretrain_epochs": 3,
            "epochs_per_step": epochs_per_step,
            "final_epochs": 1,
            "batch_size": 32,
        },
        "seed": seed,
    }
    spec.update(extra)
    return spec


def wait_until(
    check: Callable[[], bool], *, timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll `check` until it is true; RuntimeError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(every_s)


class RedisServer:
    """A redis-server of its own on a free port, persistence off: a restart loses everything."""

    def __init__(self, root: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceMissing("redis-server is not installed")
        self.binary = binary
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.root)]
        log = (self.root / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)

        def answers() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        try:
            wait_until(answers, timeout_s=20, what=f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server: queued and unacknowledged messages are gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5, socket_connect_timeout=5)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        found = [p for p in [shutil.which("initdb")] if p]
    if not found:
        raise ServiceMissing("PostgreSQL's initdb is not installed")
    return Path(found[-1]).parent


class PostgresCluster:
    """A PostgreSQL cluster of its own (trust auth, fsync off) that can be stopped and started.

    initdb refuses root, so as root the cluster belongs to the `postgres` user.
    """

    def __init__(self) -> None:
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="adaprune-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self._user: list[str] = []
        if os.geteuid() == 0:
            self._user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, user="postgres", group="postgres")
        self._run(["initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, command: list[str]) -> None:
        args = [*self._user, str(self.bin / command[0]), *command[1:]]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise ServiceMissing(f"{command[0]} failed: {done.stderr.strip()[-500:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.root / "postgres.log")
        self._run(["pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, "start"])

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, new ones are refused."""
        self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def answers(self) -> bool:
        engine = create_engine(self.url, connect_args={"connect_timeout": 2})
        try:
            with engine.connect() as connection:
                connection.execute(text("select 1"))
            return True
        except Exception:
            return False
        finally:
            engine.dispose()

    def destroy(self) -> None:
        with contextlib.suppress(ServiceMissing):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Deployment:
    """One isolated deployment: database, file storage, queue, API client, worker processes."""

    root: Path
    database_url: str
    redis_url: str
    artifact_dir: Path
    queue: str
    store: JobStore
    api: TestClient
    key: str
    env: dict[str, str]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        database_url: str,
        redis_url: str,
        max_attempts: int = 3,
        heartbeat_s: float = 1.0,
    ) -> Deployment:
        root.mkdir(parents=True, exist_ok=True)
        artifact_dir = root / "artifacts"
        upgrade(database_url)
        store = JobStore.from_url(database_url)
        with store.tx() as session:
            key = create_key(session, TENANT)
        with store.tx() as session:
            get_or_create_tenant(session, TENANT)
        queue = f"f-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        settings = ApiSettings(
            home=root / "home",
            database_url_env=database_url,
            redis_url_env=redis_url,
            artifact_url_env=f"file://{artifact_dir}",
            heartbeat_s=heartbeat_s,
            max_attempts=max_attempts,
            allowed_entrypoints=("tests.faults",),
            allowed_file_roots=(str(root),),
            served_queues=(queue,),
        )
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ADAPRUNE_HOME": str(root / "home"),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "ARTIFACT_URL": f"file://{artifact_dir}",
            "ADAPRUNE_HEARTBEAT_S": str(heartbeat_s),
            "ADAPRUNE_MAX_ATTEMPTS": str(max_attempts),
            "ADAPRUNE_DEVICE": "cpu",
            "ADAPRUNE_METRICS_PORT": "0",
            "ADAPRUNE_ALLOWED_ENTRYPOINTS": "tests.faults",
            "ADAPRUNE_ALLOWED_FILE_ROOTS": str(root),
            "OMP_NUM_THREADS": "1",
        }
        return cls(
            root=root,
            database_url=database_url,
            redis_url=redis_url,
            artifact_dir=artifact_dir,
            queue=queue,
            store=store,
            api=TestClient(create_app(settings)),
            key=key,
            env=env,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}", "X-Adaprune-Queue": self.queue}

    # ------------------------------------------------------------------ workers
    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.root / f"worker-{len(self.workers):03d}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "cli", "worker", "--queue", self.queue],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [worker for worker in self.workers if worker.poll() is None]

    def wait_workers_ready(self, *, timeout_s: float = 90.0) -> None:
        """Wait until every live worker logged that its Celery consumer is ready."""

        def ready() -> bool:
            for index, worker in enumerate(self.workers):
                if worker.poll() is not None:
                    continue
                text = (self.root / f"worker-{index:03d}.log").read_text(errors="replace")
                if "ready." not in text:
                    return False
            return True

        wait_until(ready, timeout_s=timeout_s, what="workers to be ready", every_s=0.2)

    def owner_pid(self, job_id: str) -> int | None:
        owner = self.job(job_id).lease_owner
        if owner is None:
            return None
        return int(owner.split(":")[-2])

    def kill_worker(self, pid: int) -> bool:
        """SIGKILL our worker process `pid`; False when it is not one of ours or already gone."""
        for worker in self.workers:
            if worker.pid == pid and worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait()
                return True
        return False

    def worker_logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.root.glob("worker-*.log"))
        )

    # --------------------------------------------------------------------- jobs
    def submit(self, spec: dict[str, Any]) -> str:
        response = self.api.post("/v1/jobs", json=spec, headers=self.headers)
        if response.status_code != 201:
            raise RuntimeError(f"submit answered {response.status_code}: {response.text}")
        return str(response.json()["id"])

    def job(self, job_id: str) -> Job:
        job = self.store.load_job(job_id)
        if job is None:
            raise RuntimeError(f"job {job_id} does not exist")
        return job

    def wait_final(self, job_ids: Iterable[str], *, timeout_s: float) -> dict[str, Job]:
        pending = list(job_ids)
        done: dict[str, Job] = {}
        deadline = time.monotonic() + timeout_s
        while pending:
            for job_id in list(pending):
                job = self.job(job_id)
                if job.state in FINAL:
                    done[job_id] = job
                    pending.remove(job_id)
            if pending and time.monotonic() > deadline:
                states = {j: self.job(j).state for j in pending}
                raise RuntimeError(f"jobs not final after {timeout_s}s: {states}")
            time.sleep(0.1)
        return done

    def finish_lines(self, job_id: str) -> list[str]:
        """Every "finished <state>" log line the workers wrote for `job_id`."""
        marker = f"job {job_id}: finished "
        return [line for line in self.worker_logs().splitlines() if marker in line]

    def stored_keys(self, job_id: str, part: str) -> list[str]:
        base = self.artifact_dir / job_prefix(TENANT, job_id) / part
        if not base.is_dir():
            return []
        return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file())

    def audit_success(self, job_id: str) -> list[str]:
        """What is wrong with a job that should have succeeded exactly once (empty: nothing)."""
        problems: list[str] = []
        job = self.job(job_id)
        if job.state != "succeeded":
            problems.append(f"state {job.state} ({job.error_code}: {job.error_message})")
        steps = [row.step for row in self.store.list_steps(job_id)]
        if steps != list(range(len(steps))) or not steps:
            problems.append(f"steps not continuous: {steps}")
        elif self.store.list_steps(job_id)[-1].decision != "final":
            problems.append("last step is not the final one")
        rows = self.store.list_artifacts(job_id)
        if [row.name for row in rows] != ARTIFACT_NAMES:
            problems.append(f"artifact rows {[row.name for row in rows]}")
        if self.stored_keys(job_id, "artifacts") != ARTIFACT_NAMES:
            problems.append(f"artifact files {self.stored_keys(job_id, 'artifacts')}")
        for row in rows:
            path = self.artifact_dir / row.storage_key
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != row.sha256:
                problems.append(f"{row.name} does not match its recorded sha256")
        if self.stored_keys(job_id, "checkpoints"):
            problems.append("checkpoints left behind")
        finished = self.finish_lines(job_id)
        if len(finished) != 1 or "finished succeeded" not in finished[0]:
            problems.append(f"finished {len(finished)} times: {finished}")
        return problems

    def weights_sha256(self, job_id: str) -> str | None:
        row = self.store.get_artifact(job_id, "weights.safetensors")
        return None if row is None else row.sha256

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGQUIT)
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.api.close()
        self.store.engine.dispose()
