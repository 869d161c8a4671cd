"""Dead workers cannot keep a cancel pending, and only the lease holder writes a job's results."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from service.db.models import Job, utcnow
from service.store import ATTEMPTS_EXHAUSTED, ArtifactRow, JobStore

STALE_S = 30.0


def step_report(step: int, sparsity: float) -> dict[str, Any]:
    return {
        "step": step,
        "target_sparsity": sparsity,
        "sparsity": sparsity,
        "metric": 0.8,
        "loss": 0.3,
        "decision": "keep",
        "seconds": 1.0,
        "epochs": 1,
    }


def age_heartbeat(store: JobStore, job_id: str, *, seconds: float) -> None:
    """Make the job's last heartbeat `seconds` old, as if its worker had died then."""
    with store.tx() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


@pytest.fixture
def tenant(store: JobStore, new_tenant: Any) -> int:
    return int(new_tenant(store, "acme")[0])


@pytest.fixture
def running(store: JobStore, tenant: int, tiny_spec: Any) -> str:
    job_id = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id
    assert store.claim(job_id, owner="w1", stale_after_s=STALE_S, max_attempts=3) is not None
    return job_id


def test_cancelling_a_job_whose_worker_died_cancels_it_at_once(
    store: JobStore, tenant: int, running: str
) -> None:
    age_heartbeat(store, running, seconds=3 * STALE_S)
    job = store.request_cancel(tenant, running, stale_after_s=STALE_S)
    assert (job.state, job.lease_owner) == ("cancelled", None)
    assert job.finished_at is not None


def test_a_stale_cancelling_job_is_cancelled_by_a_second_request(
    store: JobStore, tenant: int, running: str
) -> None:
    assert store.request_cancel(tenant, running, stale_after_s=STALE_S).state == "cancelling"
    age_heartbeat(store, running, seconds=3 * STALE_S)
    assert store.request_cancel(tenant, running, stale_after_s=STALE_S).state == "cancelled"


def test_cancelling_a_job_with_a_live_worker_waits_for_it(
    store: JobStore, tenant: int, running: str
) -> None:
    age_heartbeat(store, running, seconds=STALE_S / 3)
    assert store.request_cancel(tenant, running, stale_after_s=STALE_S).state == "cancelling"


def test_cancel_route_uses_the_heartbeat_setting(
    api: TestClient, auth: dict[str, str], api_store: JobStore, tiny_spec: Any
) -> None:
    job_id = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
    assert api_store.claim(job_id, owner="w1", stale_after_s=STALE_S, max_attempts=3)
    age_heartbeat(api_store, job_id, seconds=29)  # fresh: 3 x the default 10 s is 30 s
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()["state"] == "cancelling"
    age_heartbeat(api_store, job_id, seconds=31)
    assert api.post(f"/v1/jobs/{job_id}/cancel", headers=auth).json()["state"] == "cancelled"


def test_a_stale_cancelling_job_out_of_attempts_ends_cancelled(
    store: JobStore, tenant: int, tiny_spec: Any
) -> None:
    job_id = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id
    assert store.claim(job_id, owner="w1", stale_after_s=STALE_S, max_attempts=1)
    store.request_cancel(tenant, job_id)
    age_heartbeat(store, job_id, seconds=3 * STALE_S)
    assert store.claim(job_id, owner="w2", stale_after_s=STALE_S, max_attempts=1) is None
    job = store.get_job(tenant, job_id)
    assert job.state == "cancelled" and job.error_code != ATTEMPTS_EXHAUSTED


def test_a_stale_running_job_out_of_attempts_still_fails(
    store: JobStore, tenant: int, running: str
) -> None:
    age_heartbeat(store, running, seconds=3 * STALE_S)
    assert store.claim(running, owner="w2", stale_after_s=STALE_S, max_attempts=1) is None
    job = store.get_job(tenant, running)
    assert (job.state, job.error_code) == ("failed", ATTEMPTS_EXHAUSTED)


def test_record_step_writes_only_for_the_lease_holder(
    store: JobStore, tenant: int, running: str
) -> None:
    assert store.record_step(running, owner="w1", attempt=1, report=step_report(0, 0.1))
    assert not store.record_step(running, owner="w2", attempt=1, report=step_report(1, 0.4))
    assert [step.step for step in store.list_steps(running)] == [0]
    assert store.get_job(tenant, running).sparsity == pytest.approx(0.1)


def test_record_step_is_refused_once_the_job_is_final(
    store: JobStore, tenant: int, running: str
) -> None:
    assert store.finish(running, owner="w1", state="failed", error_code="x", error_message="x")
    assert not store.record_step(running, owner="w1", attempt=1, report=step_report(0, 0.1))
    assert store.list_steps(running) == []


def test_record_artifacts_writes_only_for_the_lease_holder(
    store: JobStore, tenant: int, running: str
) -> None:
    row = ArtifactRow("manifest.json", "k/manifest.json", 2, "a" * 64)
    assert not store.record_artifacts(running, [row], owner="w2")
    assert store.list_artifacts(running) == []
    assert store.record_artifacts(running, [row], owner="w1")
    assert [a.name for a in store.list_artifacts(running)] == ["manifest.json"]
    store.finish(running, owner="w1", state="succeeded", result={})
    assert not store.record_artifact(
        running, owner="w1", name="late.json", storage_key="k/late", size_bytes=1, sha256="b" * 64
    )
