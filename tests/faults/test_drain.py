"""An operator's stop never fails a job: a real worker running a job gets SIGQUIT or SIGTERM,
the job goes back to `queued` with its attempt not counted, and a second worker finishes it
from its checkpoint with the result of an uninterrupted run."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FINAL, Deployment, RedisServer, fault_spec, wait_until

SPEC = fault_spec(steps=5, epochs_per_step=25, seed=2)


@pytest.fixture
def solo(broker: RedisServer, tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of its own, with no worker yet: each test starts the ones it needs."""
    dep = Deployment.open(
        tmp_path, database_url=f"sqlite:///{tmp_path / 'adaprune.db'}", redis_url=broker.url
    )
    try:
        yield dep
    finally:
        dep.close()


def _steps(dep: Deployment, job_id: str) -> int:
    rows = dep.store.list_steps(job_id)
    return rows[-1].step if rows else -1


def _exit_code(worker: subprocess.Popen[bytes], timeout_s: float) -> int:
    try:
        return worker.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        raise AssertionError(f"the worker did not exit within {timeout_s}s") from None


@pytest.mark.parametrize("stop", [signal.SIGQUIT, signal.SIGTERM], ids=["SIGQUIT", "SIGTERM"])
def test_a_stopped_worker_hands_its_job_back_and_the_next_worker_resumes_it(
    solo: Deployment, stop: signal.Signals
) -> None:
    first = solo.start_worker()
    solo.wait_workers_ready()
    reference = solo.submit(SPEC)
    solo.wait_final([reference], timeout_s=180)
    assert solo.audit_success(reference) == []

    job_id = solo.submit(SPEC)
    wait_until(
        lambda: _steps(solo, job_id) >= 1 or solo.job(job_id).state in FINAL,
        timeout_s=120,
        what="the job's first pruning step",
    )
    assert solo.job(job_id).state == "running", "the job ended before the signal"
    at_signal = _steps(solo, job_id)
    first.send_signal(stop)
    assert _exit_code(first, 60) == 0, solo.worker_logs()[-3000:]

    job = solo.job(job_id)
    assert (job.state, job.attempt, job.lease_owner, job.error_code) == ("queued", 0, None, None)
    requeued = [e for e in solo.store.list_events(job_id) if e.kind == "requeued"]
    assert len(requeued) == 1 and requeued[0].data["attempt_counted"] is False
    assert signal.Signals(stop).name in requeued[0].message

    solo.start_worker()
    solo.wait_final([job_id], timeout_s=180)
    assert solo.audit_success(job_id) == []
    done = solo.job(job_id)
    assert done.attempt == 1
    resumed = [e for e in solo.store.list_events(job_id) if e.kind == "resumed"]
    assert len(resumed) == 1
    checkpoint = resumed[0].data["checkpoint_step"]
    assert checkpoint is not None and checkpoint >= at_signal - 1
    if stop == signal.SIGTERM:
        # SIGTERM let the job reach its next checkpoint first: nothing was lost.
        assert checkpoint >= at_signal
    assert done.metric == solo.job(reference).metric
    assert solo.weights_sha256(job_id) == solo.weights_sha256(reference)


def test_an_idle_worker_stops_at_once_on_each_signal(solo: Deployment) -> None:
    workers = [solo.start_worker() for _ in range(3)]
    solo.wait_workers_ready()
    for worker, stop in zip(workers, (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT), strict=True):
        worker.send_signal(stop)
    assert [_exit_code(worker, 30) for worker in workers] == [0, 0, 0]
    assert "NotImplementedError" not in solo.worker_logs()
