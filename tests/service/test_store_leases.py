from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from service.store import ATTEMPTS_EXHAUSTED, Claim, JobStore

LIVE = 30.0


@pytest.fixture
def job_id(store: JobStore, new_tenant: Any, tiny_spec: Any) -> str:
    tenant, _ = new_tenant(store, "acme")
    return store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id


def claim(store: JobStore, job_id: str, owner: str, **kwargs: Any) -> Claim | None:
    options = {"stale_after_s": LIVE, "max_attempts": 3, **kwargs}
    return store.claim(job_id, owner=owner, **options)


def step_report(step: int, sparsity: float, decision: str = "keep") -> dict[str, Any]:
    return {
        "step": step,
        "target_sparsity": sparsity,
        "sparsity": sparsity,
        "metric": 0.9 - step / 100,
        "loss": 0.3,
        "decision": decision,
        "seconds": 1.5,
        "epochs": 1,
        "phase_seconds": {"finetune": 1.0},
    }


def test_claim_takes_a_queued_job_and_starts_attempt_one(store: JobStore, job_id: str) -> None:
    taken = claim(store, job_id, "w1")
    assert taken is not None
    assert (taken.attempt, taken.tenant, taken.queue, taken.resumed) == (1, "acme", "gpu", False)
    assert taken.spec["prune"]["target_sparsity"] == 0.5
    job = store.load_job(job_id)
    assert job is not None and (job.state, job.lease_owner) == ("running", "w1")
    assert job.started_at is not None and job.heartbeat_at is not None


def test_live_lease_of_another_worker_is_not_taken(store: JobStore, job_id: str) -> None:
    assert claim(store, job_id, "w1") is not None
    assert claim(store, job_id, "w2") is None
    job = store.load_job(job_id)
    assert job is not None and (job.lease_owner, job.attempt) == ("w1", 1)


def test_stale_lease_is_taken_over_as_the_next_attempt(store: JobStore, job_id: str) -> None:
    assert claim(store, job_id, "w1") is not None
    time.sleep(0.3)
    taken = claim(store, job_id, "w2", stale_after_s=0.2)
    assert taken is not None and taken.attempt == 2 and taken.resumed
    assert not store.heartbeat(job_id, owner="w1").owned
    assert store.heartbeat(job_id, owner="w2").owned


def test_final_job_is_never_claimed(store: JobStore, job_id: str) -> None:
    assert claim(store, job_id, "w1") is not None
    assert store.finish(job_id, owner="w1", state="succeeded", result={"sparsity": 0.5})
    time.sleep(0.05)
    assert claim(store, job_id, "w2", stale_after_s=0.01) is None


def test_attempts_past_the_cap_fail_the_job(store: JobStore, job_id: str) -> None:
    for owner in ("w1", "w2"):
        assert claim(store, job_id, owner, stale_after_s=0.05, max_attempts=2) is not None
        time.sleep(0.1)
    assert claim(store, job_id, "w3", stale_after_s=0.05, max_attempts=2) is None
    job = store.load_job(job_id)
    assert job is not None
    assert (job.state, job.error_code, job.attempt) == ("failed", ATTEMPTS_EXHAUSTED, 2)


def race_claims(store: JobStore, job_id: str, owners: list[str]) -> list[Claim | None]:
    barrier = threading.Barrier(len(owners))
    results: list[Claim | None] = []

    def attempt(owner: str) -> None:
        barrier.wait()
        results.append(claim(store, job_id, owner))

    threads = [threading.Thread(target=attempt, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_exactly_one_of_two_racing_workers_wins(
    store: JobStore, new_tenant: Any, tiny_spec: Any
) -> None:
    tenant, _ = new_tenant(store, "acme")
    for _ in range(8):
        job_id = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id
        results = race_claims(store, job_id, ["w1", "w2"])
        assert len(results) == 2
        assert len([result for result in results if result is not None]) == 1
        job = store.load_job(job_id)
        assert job is not None and job.attempt == 1


def test_only_the_lease_owner_can_finish(store: JobStore, job_id: str) -> None:
    assert claim(store, job_id, "w1") is not None
    assert not store.finish(job_id, owner="w2", state="failed", error_code="x")
    assert store.finish(
        job_id, owner="w1", state="succeeded", result={"sparsity": 0.48, "metric": 0.91}
    )
    job = store.load_job(job_id)
    assert job is not None
    assert (job.state, job.sparsity, job.metric, job.progress) == ("succeeded", 0.48, 0.91, 1.0)
    assert not store.finish(job_id, owner="w1", state="failed")


def test_finish_refuses_a_state_that_is_not_final(store: JobStore, job_id: str) -> None:
    with pytest.raises(ValueError, match="'running'"):
        store.finish(job_id, owner="w1", state="running")


def test_heartbeat_reports_lease_loss(store: JobStore, job_id: str) -> None:
    assert not store.heartbeat(job_id, owner="w1").owned
    assert claim(store, job_id, "w1") is not None
    status = store.heartbeat(job_id, owner="w1")
    assert status.owned and not status.cancel_requested


def test_requeue_stale_returns_dead_running_jobs_to_the_queue(
    store: JobStore, new_tenant: Any, tiny_spec: Any
) -> None:
    tenant, _ = new_tenant(store, "acme")
    dead, live, cancelling = (
        store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job.id for _ in range(3)
    )
    for job_id in (dead, cancelling):
        assert claim(store, job_id, "gone") is not None
    store.request_cancel(tenant, cancelling)
    time.sleep(0.3)
    assert claim(store, live, "alive") is not None
    assert store.requeue_stale(stale_after_s=0.2) == [dead]
    states = {job_id: store.get_job(tenant, job_id) for job_id in (dead, live, cancelling)}
    assert (states[dead].state, states[dead].lease_owner) == ("queued", None)
    assert states[live].state == "running"
    assert states[cancelling].state == "cancelled"
    assert claim(store, dead, "new") is not None


def test_steps_upsert_and_update_the_job(store: JobStore, job_id: str) -> None:
    claim(store, job_id, "w1")
    store.record_step(job_id, owner="w1", attempt=1, report=step_report(0, 0.0, "baseline"))
    store.record_step(job_id, owner="w1", attempt=1, report=step_report(1, 0.2))
    store.record_step(job_id, owner="w1", attempt=2, report=step_report(1, 0.25))
    steps = store.list_steps(job_id)
    assert [(s.step, s.attempt, s.sparsity) for s in steps] == [(0, 1, 0.0), (1, 2, 0.25)]
    job = store.load_job(job_id)
    assert job is not None
    assert job.dense_metric == pytest.approx(0.9)
    assert (job.sparsity, job.progress) == (0.25, pytest.approx(0.5))


def test_truncate_drops_steps_after_the_checkpoint(store: JobStore, job_id: str) -> None:
    claim(store, job_id, "w1")
    for step in range(4):
        store.record_step(job_id, owner="w1", attempt=1, report=step_report(step, step / 10))
    assert store.truncate_steps(job_id, after_step=1) == 2
    assert [s.step for s in store.list_steps(job_id)] == [0, 1]


def test_step_report_missing_fields_is_refused(store: JobStore, job_id: str) -> None:
    with pytest.raises(ValueError, match="loss"):
        store.record_step(job_id, owner="w1", attempt=1, report={"step": 0, "sparsity": 0.1})


def test_phase_needs_the_lease(store: JobStore, job_id: str) -> None:
    assert not store.set_phase(job_id, owner="w1", phase="scoring")
    claim(store, job_id, "w1")
    assert store.set_phase(job_id, owner="w1", phase="baseline", dense_metric=0.93)
    job = store.load_job(job_id)
    assert job is not None and (job.phase, job.dense_metric) == ("baseline", 0.93)
    with pytest.raises(ValueError, match="'training'"):
        store.set_phase(job_id, owner="w1", phase="training")


def test_artifacts_are_recorded_once_per_name(store: JobStore, job_id: str) -> None:
    # No owner: written without a lease check, as tools outside a worker do.
    store.record_artifact(
        job_id, owner=None, name="manifest.json", storage_key="k/m", size_bytes=3, sha256="a" * 64
    )
    store.record_artifact(
        job_id, owner=None, name="manifest.json", storage_key="k/m", size_bytes=5, sha256="b" * 64
    )
    rows = store.list_artifacts(job_id)
    assert [(r.name, r.size_bytes, r.sha256) for r in rows] == [("manifest.json", 5, "b" * 64)]
    with pytest.raises(ValueError, match=r"'\.\./x'"):
        store.record_artifact(
            job_id, owner=None, name="../x", storage_key="k", size_bytes=1, sha256="a" * 64
        )


def test_state_counts_and_heartbeat_age(store: JobStore, job_id: str) -> None:
    assert store.max_heartbeat_age_s() == 0.0
    assert store.job_state_counts()["queued"] == 1
    claim(store, job_id, "w1")
    time.sleep(0.2)
    counts = store.job_state_counts()
    assert (counts["queued"], counts["running"], counts["failed"]) == (0, 1, 0)
    assert 0.15 < store.max_heartbeat_age_s() < 10
