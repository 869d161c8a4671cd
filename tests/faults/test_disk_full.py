"""A disk that fills up mid-job: a real tmpfs of a few MiB under the artifact storage, or under
the worker's own work directory, is filled while a real worker runs a job. The job is never
failed for good: its storage calls retry, then it goes back to the queue (a `requeued` event
naming the error) and, once space is freed, resumes from its checkpoint and succeeds;
`/readyz` says the storage is unavailable while the disk is full."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import FINAL, Deployment, RedisServer, fault_spec, wait_until

SIZE = "16m"


@contextlib.contextmanager
def tiny_disk(where: Path) -> Iterator[Path]:
    """A tmpfs of SIZE mounted at `where` (skips where mounting is not permitted)."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left; returns it (delete it to free space)."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError:
            pass
    return filler


@pytest.fixture(params=["artifacts", "home"], ids=["artifact-storage-full", "work-disk-full"])
def full_deployment(
    request: pytest.FixtureRequest, broker: RedisServer, tmp_path: Path
) -> Iterator[tuple[Deployment, Path]]:
    with tiny_disk(tmp_path / request.param) as disk:
        dep = Deployment.open(
            tmp_path, database_url=f"sqlite:///{tmp_path / 'adaprune.db'}", redis_url=broker.url
        )
        try:
            dep.start_worker()
            dep.wait_workers_ready()
            yield dep, disk
        finally:
            dep.close()


def test_a_full_disk_requeues_the_job_and_it_resumes_once_space_is_freed(
    full_deployment: tuple[Deployment, Path],
) -> None:
    dep, disk = full_deployment
    job_id = dep.submit(fault_spec(steps=5, epochs_per_step=25, seed=4))
    wait_until(
        lambda: (
            (
                bool(dep.stored_keys(job_id, "checkpoints"))
                and any(row.step >= 1 for row in dep.store.list_steps(job_id))
            )
            or dep.job(job_id).state in FINAL
        ),
        timeout_s=120,
        what="the job's first checkpoint",
    )
    assert dep.job(job_id).state == "running"
    filler = fill(disk)
    try:
        if disk.name == "artifacts":
            # (a worker's own work disk is not the API's to see: /readyz probes the storage)
            ready = dep.api.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["storage"] == "unavailable: OSError (ENOSPC)"

        def requeued() -> bool:
            return any(e.kind == "requeued" for e in dep.store.list_events(job_id))

        wait_until(requeued, timeout_s=120, what="the job to be requeued", every_s=0.02)
    finally:
        filler.unlink()
    event = next(e for e in dep.store.list_events(job_id) if e.kind == "requeued")
    assert event.data["attempt_counted"] is True
    assert "storage_unavailable" in event.message and "No space left on device" in event.message
    assert dep.api.get("/readyz").status_code == 200, dep.api.get("/readyz").text

    dep.wait_final([job_id], timeout_s=180)
    assert dep.audit_success(job_id) == []
    job = dep.job(job_id)
    assert job.error_code is None and job.attempt >= 2
    resumed = [e for e in dep.store.list_events(job_id) if e.kind == "resumed"]
    assert resumed and resumed[0].data["checkpoint_step"] is not None
