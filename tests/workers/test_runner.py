"""The runner in-process: a storage outage requeues the job (it resumes from its checkpoint) or,
on the last try, fails it clearly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.storage import FileStorage
from service.store import JobStore
from tests.support.deployment import tiny_spec
from workers.metrics import WorkerMetrics
from workers.runner import JobRunner
from workers.settings import WorkerSettings


class OutageStorage(FileStorage):
    """File storage whose artifact uploads fail while `down` is True (checkpoints still work)."""

    down = True

    def put_file(self, key: str, path: Path) -> None:
        if self.down and "/artifacts/" in key:
            raise ConnectionError("storage endpoint unreachable")
        super().put_file(key, path)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    job_store = JobStore.from_url(url)
    with job_store.tx() as session:
        create_key(session, "acme")
    yield job_store
    job_store.engine.dispose()


def _runner(store: JobStore, tmp_path: Path) -> JobRunner:
    settings = WorkerSettings(home=tmp_path / "home", heartbeat_s=1.0, device="cpu")
    return JobRunner(
        settings=settings,
        store=store,
        storage=OutageStorage(tmp_path / "artifacts"),
        metrics=WorkerMetrics(),
        owner="worker-a",
    )


def _job(store: JobStore) -> str:
    with store.tx() as session:
        tenant_id = get_or_create_tenant(session, "acme").id
    return store.create_job(tenant_id=tenant_id, spec=tiny_spec(), queue="gpu").job.id


def test_storage_outage_on_the_last_try_fails_the_job_with_a_clear_code(
    store: JobStore, tmp_path: Path
) -> None:
    job_id = _job(store)
    assert _runner(store, tmp_path).run(job_id, last_try=True) == "failed"
    job = store.load_job(job_id)
    assert job is not None
    assert (job.state, job.error_code) == ("failed", "storage_unavailable")
    assert "unreachable" in (job.error_message or "")
    assert store.list_artifacts(job_id) == []


def test_storage_outage_requeues_the_job_and_the_next_attempt_resumes_from_the_checkpoint(
    store: JobStore, tmp_path: Path
) -> None:
    job_id = _job(store)
    runner = _runner(store, tmp_path)
    assert runner.run(job_id, last_try=False) == "requeued"
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.lease_owner, job.attempt) == ("queued", None, 1)
    event = [e for e in store.list_events(job_id) if e.kind == "requeued"][-1]
    assert event.data["attempt_counted"] is True and "unreachable" in event.message
    steps_before = [(row.step, row.attempt) for row in store.list_steps(job_id)]

    OutageStorage.down = False
    try:
        assert runner.run(job_id, last_try=False) == "succeeded"
    finally:
        OutageStorage.down = True
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.attempt) == ("succeeded", 2)
    assert [(row.step, row.attempt) for row in store.list_steps(job_id)] == steps_before
    assert len(store.list_artifacts(job_id)) == 4
    assert runner.metrics.retries._value.get() == 1
