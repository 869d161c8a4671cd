"""Job events in the store, on SQLite and PostgreSQL: lease guard, cursor, lifecycle events."""

from __future__ import annotations

from typing import Any

import pytest

from service.store import JobStore

SPEC = {
    "name": "tiny",
    "model": {"arch": "mlp"},
    "task": {"dataset": "digits"},
    "prune": {"target_sparsity": 0.5},
}


@pytest.fixture
def job_id(store: JobStore, new_tenant: Any) -> str:
    tenant_id, _ = new_tenant(store, "tenant")
    return store.create_job(tenant_id=tenant_id, spec=SPEC, queue="gpu").job.id


def kinds(store: JobStore, job_id: str) -> list[str]:
    return [event.kind for event in store.list_events(job_id)]


def test_claim_and_finish_write_their_events(store: JobStore, job_id: str) -> None:
    claim = store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
    assert claim is not None
    assert store.finish(
        job_id, owner="w1", state="succeeded", result={"sparsity": 0.41, "metric": 0.9}
    )
    events = store.list_events(job_id)
    assert [e.kind for e in events] == ["claimed", "finished"]
    assert events[0].data == {"worker": "w1", "attempt": 1}
    assert "w1" in events[0].message and "attempt 1" in events[0].message
    # 0.41 of 0.5 asked: the outcome says the target was missed
    assert events[1].level == "warning"
    assert "0.410 of 0.500 asked" in events[1].message
    assert events[0].at.utcoffset() is not None and events[0].seq < events[1].seq


def test_worker_events_need_the_lease(store: JobStore, job_id: str) -> None:
    # queued: nobody holds the lease, so a worker's event is refused
    assert not store.append_event(job_id, owner="w1", kind="phase", message="phase baseline")
    store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
    assert store.append_event(
        job_id, owner="w1", kind="step", message="step 1", data={"step": 1, "sparsity": 0.2}
    )
    assert not store.append_event(job_id, owner="w2", kind="step", message="step 1 again")
    assert kinds(store, job_id) == ["claimed", "step"]
    assert store.list_events(job_id)[1].data == {"step": 1, "sparsity": 0.2}


def test_events_page_after_a_cursor(store: JobStore, job_id: str) -> None:
    store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
    for step in range(5):
        store.append_event(job_id, owner="w1", kind="step", message=f"step {step}")
    first = store.list_events(job_id, limit=2)
    rest = store.list_events(job_id, after=first[-1].seq, limit=100)
    assert [e.message for e in first] == [first[0].message, "step 0"]
    assert [e.message for e in rest] == ["step 1", "step 2", "step 3", "step 4"]
    assert store.list_events(job_id, after=rest[-1].seq) == []


def test_unknown_kind_or_level_is_refused(store: JobStore, job_id: str) -> None:
    with pytest.raises(ValueError, match="kind"):
        store.append_event(job_id, owner=None, kind="gossip", message="x")
    with pytest.raises(ValueError, match="level"):
        store.append_event(job_id, owner=None, kind="warning", level="fatal", message="x")


def test_requeue_cancel_and_exhaustion_are_logged(store: JobStore, job_id: str) -> None:
    store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=2)
    assert store.requeue_stale(stale_after_s=-1) == [job_id]  # every heartbeat is stale now
    store.claim(job_id, owner="w2", stale_after_s=30, max_attempts=2)
    store.requeue_stale(stale_after_s=-1)
    assert store.claim(job_id, owner="w3", stale_after_s=30, max_attempts=2) is None
    events = store.list_events(job_id)
    assert [e.kind for e in events] == ["claimed", "requeued", "claimed", "requeued", "finished"]
    assert events[-1].level == "error" and "gave up after 2 attempts" in events[-1].message


def test_cancel_requests_are_logged(store: JobStore, job_id: str) -> None:
    tenant_id = store.load_job(job_id).tenant_id  # type: ignore[union-attr]
    store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
    store.request_cancel(tenant_id, job_id)
    assert store.finish(job_id, owner="w1", state="cancelled", error_message="cancelled by request")
    events = store.list_events(job_id)
    assert [e.kind for e in events] == ["claimed", "cancel", "finished"]
    assert events[-1].message == "cancelled: cancelled by request"
