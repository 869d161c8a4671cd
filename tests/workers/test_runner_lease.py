"""A worker whose lease was taken over writes nothing more and stops, as on heartbeat loss."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.db.models import Job
from service.storage import FileStorage
from service.store import ArtifactRow, JobStore
from tests.support.deployment import tiny_spec
from workers.metrics import WorkerMetrics
from workers.runner import JobRunner
from workers.settings import WorkerSettings

THIEF = "worker-b"


class TakeoverStore(JobStore):
    """The real store; another worker takes the lease just before a chosen write."""

    steal_before_step: int | None = None
    steal_before_artifacts = False

    def steal(self, job_id: str) -> None:
        with self.tx() as session:
            session.execute(update(Job).where(Job.id == job_id).values(lease_owner=THIEF))

    def record_step(
        self, job_id: str, *, owner: str | None, attempt: int, report: Mapping[str, Any]
    ) -> bool:
        if report["step"] == self.steal_before_step:
            self.steal(job_id)
        return super().record_step(job_id, owner=owner, attempt=attempt, report=report)

    def record_artifacts(
        self, job_id: str, rows: Sequence[ArtifactRow], *, owner: str | None
    ) -> bool:
        if self.steal_before_artifacts:
            self.steal(job_id)
        return super().record_artifacts(job_id, rows, owner=owner)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TakeoverStore]:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    job_store = TakeoverStore.from_url(url)
    with job_store.tx() as session:
        create_key(session, "acme")
    yield job_store
    job_store.engine.dispose()


def _run(store: TakeoverStore, tmp_path: Path) -> tuple[str, str]:
    with store.tx() as session:
        tenant_id = get_or_create_tenant(session, "acme").id
    job_id = store.create_job(tenant_id=tenant_id, spec=tiny_spec(), queue="gpu").job.id
    runner = JobRunner(
        settings=WorkerSettings(home=tmp_path / "home", heartbeat_s=60.0, device="cpu"),
        store=store,
        storage=FileStorage(tmp_path / "artifacts"),
        metrics=WorkerMetrics(),
        owner="worker-a",
    )
    return job_id, runner.run(job_id)


def test_a_refused_step_write_stops_the_job_as_a_lost_lease(
    store: TakeoverStore, tmp_path: Path
) -> None:
    store.steal_before_step = 1
    job_id, outcome = _run(store, tmp_path)
    assert outcome == "lost"
    assert [step.step for step in store.list_steps(job_id)] == [0]
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.lease_owner) == ("running", THIEF)
    assert store.list_artifacts(job_id) == []


def test_a_refused_artifact_write_leaves_the_job_to_its_new_owner(
    store: TakeoverStore, tmp_path: Path
) -> None:
    store.steal_before_artifacts = True
    job_id, outcome = _run(store, tmp_path)
    assert outcome == "lost"
    assert store.list_artifacts(job_id) == []
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.lease_owner) == ("running", THIEF)
