"""End to end through one real worker process: success, cancel, duplicates, bad specs, caps."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import timedelta

import redis
from sqlalchemy import update

from service.db.models import Job, utcnow
from tests.support.deployment import tiny_spec
from tests.workers.conftest import MAX_ATTEMPTS, Service, wait_for_metrics


def _drained(redis_db: redis.Redis, queue: str) -> bool:
    return redis_db.llen(queue) == 0 and redis_db.hlen("unacked") == 0


def _wait_drained(redis_db: redis.Redis, queue: str, *, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not _drained(redis_db, queue):
        assert time.monotonic() < deadline, "the worker did not consume the message"
        time.sleep(0.1)


def test_job_succeeds_and_its_artifact_downloads_with_matching_checksums(shared: Service) -> None:
    job_id = shared.submit(tiny_spec())
    job = shared.wait_final(job_id)
    assert (job.state, job.error_code, job.attempt) == ("succeeded", None, 1)
    assert job.progress == 1.0 and job.sparsity is not None and job.sparsity > 0.5
    assert job.result is not None and job.result["metric"] == job.metric

    listing = shared.api.get(f"/v1/jobs/{job_id}/artifacts", headers=shared.headers).json()
    names = [item["name"] for item in listing]
    assert names == ["curve.png", "manifest.json", "steps.csv", "weights.safetensors"]
    files = {}
    for item in listing:
        body = shared.api.get(
            f"/v1/jobs/{job_id}/artifacts/{item['name']}", headers=shared.headers
        ).content
        assert hashlib.sha256(body).hexdigest() == item["sha256"]
        assert len(body) == item["size_bytes"]
        files[item["name"]] = body
    manifest = json.loads(files["manifest.json"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"]

    steps = [row.step for row in shared.store.list_steps(job_id)]
    assert steps == list(range(len(steps))) and len(steps) == 5
    metrics = wait_for_metrics(shared.metrics_port)
    assert 'adaprune_jobs_finished_total{outcome="succeeded"}' in metrics
    assert "adaprune_steps_total" in metrics and "adaprune_worker_busy 0.0" in metrics


def test_cancel_while_running_ends_the_job_cancelled(shared: Service) -> None:
    job_id = shared.submit(tiny_spec(steps=30, epochs_per_step=5))
    shared.wait(job_id, lambda job: job.state == "running" and (job.sparsity or 0) > 0)
    response = shared.api.post(f"/v1/jobs/{job_id}/cancel", headers=shared.headers)
    assert response.json()["state"] in ("cancelling", "cancelled")
    job = shared.wait_final(job_id, timeout_s=20)
    assert (job.state, job.error_code) == ("cancelled", "cancelled")
    assert shared.store.list_artifacts(job_id) == []
    assert len(shared.store.list_steps(job_id)) < 32


def test_duplicate_delivery_of_a_live_leased_job_is_a_no_op(shared: Service) -> None:
    job_id = shared.store.create_job(
        tenant_id=shared.tenant_id, spec=tiny_spec(), queue=shared.queue
    ).job.id
    claim = shared.store.claim(
        job_id, owner="other-worker", stale_after_s=3, max_attempts=MAX_ATTEMPTS
    )
    assert claim is not None
    shared.enqueue(job_id)
    deadline = time.monotonic() + 20
    while f"job {job_id}: not taken" not in shared.worker_logs():
        shared.store.heartbeat(job_id, owner="other-worker")
        assert time.monotonic() < deadline, "the worker did not consume the duplicate"
        time.sleep(0.2)
    job = shared.job(job_id)
    assert (job.state, job.lease_owner, job.attempt) == ("running", "other-worker", 1)
    assert shared.store.list_steps(job_id) == []
    assert shared.store.finish(job_id, owner="other-worker", state="cancelled")


def test_a_bad_spec_in_the_database_fails_once_without_retry(
    shared: Service, redis_db: redis.Redis
) -> None:
    spec = tiny_spec()
    spec["prune"]["target_sparsity"] = 1.5
    created = shared.store.create_job(tenant_id=shared.tenant_id, spec=spec, queue=shared.queue)
    job_id = created.job.id
    shared.enqueue(job_id)
    job = shared.wait_final(job_id)
    assert (job.state, job.error_code, job.attempt) == ("failed", "spec_invalid", 1)
    assert "prune.target_sparsity" in (job.error_message or "")
    _wait_drained(redis_db, shared.queue)
    time.sleep(1.0)
    assert shared.job(job_id).attempt == 1


def test_a_dead_job_past_its_attempt_cap_fails_as_attempts_exhausted(shared: Service) -> None:
    created = shared.store.create_job(
        tenant_id=shared.tenant_id, spec=tiny_spec(), queue=shared.queue
    )
    job_id = created.job.id
    # A worker died on the last allowed attempt: running, stale heartbeat, no message left.
    with shared.store.tx() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                state="running",
                attempt=MAX_ATTEMPTS,
                lease_owner="dead-worker",
                heartbeat_at=utcnow() - timedelta(seconds=60),
                started_at=utcnow() - timedelta(seconds=60),
            )
        )
    job = shared.wait_final(job_id, timeout_s=20)
    assert (job.state, job.error_code, job.attempt) == (
        "failed",
        "attempts_exhausted",
        MAX_ATTEMPTS,
    )
    assert shared.store.list_steps(job_id) == []
