"""An infrastructure error in a job that fair dispatch ran on another job's message: the task's
retry names the job that ran, so that job resumes at once on the same worker (real Redis, the
real task in a Celery consumer in this process, real SQLite; the error is injected once)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from sqlalchemy.exc import OperationalError

from core.spec import PRUNE_TASK
from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.storage import FileStorage
from service.store import Claim, JobStore
from tests.support.deployment import tiny_spec
from tests.workers.conftest import REDIS_URL
from workers import tasks
from workers.app import app, configure
from workers.lease import Heartbeat
from workers.metrics import WorkerMetrics
from workers.runner import JobRunner
from workers.settings import WorkerSettings

ELSEWHERE = "worker-elsewhere"


class DatabaseBlipRunner(JobRunner):
    """The real runner; the first attempt of each job in `fail_once` stops on a lost database
    connection right after its claim. It records the job id of every message it is given."""

    def __init__(self, *args: object, fail_once: set[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fail_once = fail_once
        self.messages: list[str] = []

    def run(self, job_id: str, *, last_try: bool = True) -> str:
        self.messages.append(job_id)
        return super().run(job_id, last_try=last_try)

    def _run_claimed(self, claim: Claim, heartbeat: Heartbeat) -> str | None:
        if claim.job_id in self.fail_once:
            self.fail_once.discard(claim.job_id)
            raise OperationalError("UPDATE jobs", {}, Exception("server closed the connection"))
        return super()._run_claimed(claim, heartbeat)


@pytest.fixture
def store(tmp_path: Path, redis_db: redis.Redis) -> Iterator[JobStore]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    job_store = JobStore.from_url(url)
    for tenant in ("alpha", "beta"):
        with job_store.tx() as session:
            create_key(session, tenant)
    yield job_store
    job_store.engine.dispose()


def _job(store: JobStore, tenant: str, queue: str) -> str:
    with store.tx() as session:
        tenant_id = get_or_create_tenant(session, tenant).id
    return store.create_job(tenant_id=tenant_id, spec=tiny_spec(steps=1), queue=queue).job.id


def test_an_infra_retry_resends_the_fairly_claimed_job_not_the_messages_own(
    store: JobStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = f"r-{secrets.token_hex(4)}"
    named = _job(store, "alpha", queue)
    chosen = _job(store, "beta", queue)
    # Another worker runs the named job already (it took it from another message), so this
    # message is spent on the only queued job: the other tenant's.
    assert store.claim(named, owner=ELSEWHERE, stale_after_s=600, max_attempts=3) is not None
    settings = WorkerSettings(
        home=tmp_path / "home",
        redis_url_env=REDIS_URL,
        database_url_env=str(store.engine.url),
        heartbeat_s=60.0,  # no lease goes stale during the test
        device="cpu",
        job_memory_limit_bytes=0,
        default_queue=queue,
    )
    runner = DatabaseBlipRunner(
        settings=settings,
        store=store,
        storage=FileStorage(tmp_path / "artifacts"),
        metrics=WorkerMetrics(),
        owner="worker-here",
        fail_once={chosen},
    )
    monkeypatch.setattr(tasks, "_runner", runner)
    configure(settings)

    with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue]):
        app.send_task(PRUNE_TASK, args=[named], queue=queue)
        deadline = time.monotonic() + 60
        while (job := store.load_job(chosen)) is not None and job.state != "succeeded":
            assert time.monotonic() < deadline, (runner.messages, job.state, job.lease_owner)
            time.sleep(0.2)

    assert runner.messages == [named, chosen]
    assert (job.attempt, job.error_code) == (2, None)
    kinds = [event.kind for event in store.list_events(chosen)]
    assert "retry" in kinds and "resumed" in kinds
    other = store.load_job(named)
    assert other is not None and (other.state, other.lease_owner) == ("running", ELSEWHERE)
