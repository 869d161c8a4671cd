"""A worker killed mid-job: another worker takes the stale lease and resumes from the checkpoint."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

from core.job import run_job
from core.spec import JobSpec
from service.storage import job_prefix
from tests.support.deployment import tiny_spec
from tests.workers.conftest import Service


def _uninterrupted_metric(spec: dict[str, object]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        output = run_job(
            JobSpec.model_validate(spec),
            out_dir=Path(tmp) / "out",
            work_dir=Path(tmp) / "work",
            device="cpu",
        )
        return output.outcome.result.metric


def test_killed_worker_job_resumes_elsewhere_and_ends_like_an_uninterrupted_run(
    fresh: Service,
) -> None:
    spec = tiny_spec(steps=8, epochs_per_step=4)
    first = fresh.start_worker()
    job_id = fresh.submit(spec)
    latest = fresh.artifact_dir / job_prefix("acme", job_id) / "checkpoints" / "LATEST"

    def checkpointed_past_step_one(_job: object) -> bool:
        return latest.is_file() and latest.read_text() >= "step-0002"

    running = fresh.wait(job_id, checkpointed_past_step_one, timeout_s=90)
    assert running.state == "running" and running.attempt == 1
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = max(row.step for row in fresh.store.list_steps(job_id))

    fresh.start_worker()
    job = fresh.wait_final(job_id, timeout_s=90)
    assert (job.state, job.attempt, job.error_code) == ("succeeded", 2, None), job.error_message

    steps = fresh.store.list_steps(job_id)
    assert [row.step for row in steps] == list(range(len(steps)))
    assert {row.attempt for row in steps} == {1, 2}
    assert all(row.attempt == 1 for row in steps if row.step <= 2)
    assert steps[-1].decision == "final" and killed_at < steps[-1].step
    assert [row.name for row in fresh.store.list_artifacts(job_id)] == [
        "curve.png",
        "manifest.json",
        "steps.csv",
        "weights.safetensors",
    ]
    # the log tells the takeover: a second claim (or a requeue first), then the resume point
    events = fresh.store.list_events(job_id)
    claims = [e for e in events if e.kind == "claimed"]
    assert [e.data["attempt"] for e in claims] == [1, 2]
    assert claims[0].data["worker"] != claims[1].data["worker"]
    resumed = [e for e in events if e.kind == "resumed"]
    assert len(resumed) == 1 and resumed[0].data["checkpoint_step"] >= 2
    assert resumed[0].message.startswith("attempt 2 resumes from the checkpoint of step ")
    assert events[-1].kind == "finished" and events[-1].message.startswith("succeeded")
    assert job.metric == _uninterrupted_metric(spec)
    assert not (fresh.artifact_dir / job_prefix("acme", job_id) / "checkpoints").exists()
