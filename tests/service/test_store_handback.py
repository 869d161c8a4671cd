"""A worker hands its running job back: queued again, a `requeued` event, the attempt taken back
(a drain) or kept (a storage failure), and the next claim resumes from the checkpoint."""

from __future__ import annotations

from typing import Any

import pytest

from service.store import JobStore


@pytest.fixture
def job_id(store: JobStore, new_tenant: Any, tiny_spec: Any) -> str:
    tenant, _ = new_tenant(store, "acme")
    return store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id


def _claim(store: JobStore, job_id: str, owner: str) -> Any:
    return store.claim(job_id, owner=owner, stale_after_s=30.0, max_attempts=3)


def test_a_drained_job_is_queued_with_its_attempt_taken_back_and_resumes(
    store: JobStore, job_id: str
) -> None:
    first = _claim(store, job_id, "w1")
    assert first is not None and (first.attempt, first.resumed) == (1, False)
    assert store.hand_back(job_id, owner="w1", reason="SIGQUIT", counted=False)
    job = store.load_job(job_id)
    assert job is not None
    assert (job.state, job.attempt, job.lease_owner, job.phase) == ("queued", 0, None, None)
    assert job.started_at is not None and job.error_code is None
    event = [e for e in store.list_events(job_id) if e.kind == "requeued"][-1]
    assert "SIGQUIT" in event.message and "not counted" in event.message
    assert event.data == {"reason": "SIGQUIT", "attempt_counted": False}

    again = _claim(store, job_id, "w2")
    assert again is not None and again.attempt == 1 and again.resumed


def test_a_storage_failure_counts_the_attempt(store: JobStore, job_id: str) -> None:
    assert _claim(store, job_id, "w1") is not None
    assert store.hand_back(job_id, owner="w1", reason="storage_unavailable: full", counted=True)
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.attempt) == ("queued", 1)
    taken = _claim(store, job_id, "w2")
    assert taken is not None and taken.attempt == 2 and taken.resumed


def test_only_the_lease_holder_of_a_running_job_can_hand_it_back(
    store: JobStore, job_id: str
) -> None:
    assert not store.hand_back(job_id, owner="w1", reason="x", counted=False)  # queued
    assert _claim(store, job_id, "w1") is not None
    assert not store.hand_back(job_id, owner="w2", reason="x", counted=False)
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.lease_owner) == ("running", "w1")
    # a cancel asked for meanwhile wins: the job is not handed back
    store.request_cancel(job.tenant_id, job_id)
    assert not store.hand_back(job_id, owner="w1", reason="x", counted=False)
    job = store.load_job(job_id)
    assert job is not None and job.state == "cancelling"
    assert [e.kind for e in store.list_events(job_id)].count("requeued") == 0
