"""A worker refuses a spec newer than it understands by handing the job back, never failing it."""

from __future__ import annotations

import time

import redis

from core.contract.version import SPEC_VERSION
from tests.support.deployment import tiny_spec
from tests.workers.conftest import Service

LINE = f"is newer than this worker's {SPEC_VERSION}; back to queue"


def test_a_newer_spec_version_goes_back_to_the_queue_and_stays_queued(
    shared: Service, redis_db: redis.Redis
) -> None:
    spec = tiny_spec() | {"spec_version": SPEC_VERSION + 1}
    created = shared.store.create_job(tenant_id=shared.tenant_id, spec=spec, queue=shared.queue)
    job_id = created.job.id
    shared.enqueue(job_id)

    # Handed back, then claimed again from the queue and handed back once more.
    deadline = time.monotonic() + 60
    while shared.worker_logs().count(f"job {job_id}: spec_version") < 2:
        assert time.monotonic() < deadline, shared.worker_logs()[-3000:]
        time.sleep(0.2)
    job = shared.job(job_id)
    assert (job.state, job.attempt, job.lease_owner) == ("queued", 0, None)
    assert (job.error_code, job.error_message, job.phase, job.started_at) == (None,) * 4
    assert shared.store.list_steps(job_id) == []
    assert f"spec_version {SPEC_VERSION + 1} {LINE} {shared.queue}" in shared.worker_logs()

    # Cancelling ends the round trips; the worker is free for other jobs.
    assert shared.store.request_cancel(shared.tenant_id, job_id).state == "cancelled"
    other = shared.submit(tiny_spec())
    assert shared.wait_final(other).state == "succeeded"
    assert shared.job(job_id).attempt == 0
