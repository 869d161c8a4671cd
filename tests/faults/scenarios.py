"""The fault scenarios, each returning its figures; tests run them small, bench/chaos.py in full."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

from service.storage import job_prefix
from tests.faults.harness import (
    FINAL,
    TENANT,
    Deployment,
    PostgresCluster,
    RedisServer,
    fault_spec,
    wait_until,
)


@dataclass
class Figures:
    """What a scenario measured; `problems` lists every job that did not end as it should."""

    name: str
    jobs: int = 0
    lost: int = 0
    run_twice: int = 0
    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _tally(dep: Deployment, figures: Figures, job_ids: list[str]) -> None:
    """Count lost jobs (not succeeded) and jobs finished more than once; note each problem."""
    for job_id in job_ids:
        figures.jobs += 1
        if dep.job(job_id).state != "succeeded":
            figures.lost += 1
        if len(dep.finish_lines(job_id)) > 1:
            figures.run_twice += 1
        figures.problems += [f"{job_id}: {p}" for p in dep.audit_success(job_id)]


def _max_step(dep: Deployment, job_id: str) -> int:
    steps = dep.store.list_steps(job_id)
    return steps[-1].step if steps else -1


def sigkill(
    dep: Deployment, *, kills: int, kills_per_job: int, seed: int = 0, timeout_s: float = 120
) -> Figures:
    """SIGKILL the worker running a job at a random point, `kills` times in all.

    Each job is killed up to `kills_per_job` times: at a random step boundary (or at once,
    while it loads) plus a random delay of up to 50 ms; a fresh worker replaces the dead one.
    Every job must then succeed once, with continuous steps and the metric and weights of an
    uninterrupted run of the same spec and seed.
    """
    rng = random.Random(seed)
    spec = fault_spec(steps=4, epochs_per_step=2)
    figures = Figures("sigkill")
    reference = dep.submit(spec)
    dep.wait_final([reference], timeout_s=timeout_s)
    figures.problems += [f"reference: {p}" for p in dep.audit_success(reference)]
    last_step = _max_step(dep, reference)
    expected_metric = dep.job(reference).metric
    expected_weights = dep.weights_sha256(reference)
    job_ids: list[str] = []
    recoveries: list[float] = []
    kill_points: list[int] = []
    done = 0
    while done < kills:
        job_id = dep.submit(spec)
        job_ids.append(job_id)
        for _ in range(kills_per_job):
            if done >= kills:
                break
            point = rng.randint(-1, last_step)

            def reached(job_id: str = job_id, point: int = point) -> bool:
                job = dep.job(job_id)
                if job.state in FINAL:
                    return True
                return job.state == "running" and _max_step(dep, job_id) >= point

            wait_until(reached, timeout_s=timeout_s, what=f"job {job_id} to reach {point}")
            time.sleep(rng.uniform(0.0, 0.05))
            job = dep.job(job_id)
            pid = dep.owner_pid(job_id)
            if job.state != "running" or pid is None:
                break
            at_step = _max_step(dep, job_id)
            if not dep.kill_worker(pid):
                break
            killed_at = time.monotonic()
            done += 1
            kill_points.append(at_step)
            dep.start_worker()
            attempt = job.attempt

            def resumed(job_id: str = job_id, attempt: int = attempt) -> bool:
                job = dep.job(job_id)
                return job.state in FINAL or (job.state == "running" and job.attempt > attempt)

            wait_until(resumed, timeout_s=timeout_s, what=f"job {job_id} to resume")
            recoveries.append(time.monotonic() - killed_at)
        dep.wait_final([job_id], timeout_s=timeout_s)
    _tally(dep, figures, job_ids)
    figures.values = {
        "kills": done,
        "mismatched_metrics": sum(dep.job(j).metric != expected_metric for j in job_ids),
        "mismatched_weights": sum(dep.weights_sha256(j) != expected_weights for j in job_ids),
        "kill_points": kill_points,
        "recovery_s": recoveries,
        "reference_metric": expected_metric,
    }
    return figures


def broker_restart(
    dep: Deployment, server: RedisServer, *, jobs: int, down_s: float = 2.0, timeout_s: float = 180
) -> Figures:
    """Kill the broker (persistence off) while jobs are queued and running, then restart it."""
    figures = Figures("broker_restart")
    job_ids = [dep.submit(fault_spec(steps=4, epochs_per_step=2, seed=i)) for i in range(jobs)]

    def busy() -> bool:
        states = [dep.job(j).state for j in job_ids]
        return "running" in states and ("queued" in states or jobs == 1)

    wait_until(busy, timeout_s=timeout_s, what="a running and a queued job")
    states = [dep.job(j).state for j in job_ids]
    server.kill()
    time.sleep(down_s)
    server.start()
    restarted = time.monotonic()
    dep.wait_final(job_ids, timeout_s=timeout_s)
    _tally(dep, figures, job_ids)
    figures.values = {
        "queued_at_restart": states.count("queued"),
        "running_at_restart": states.count("running"),
        "resent": dep.worker_logs().count("missing from broker queue"),
        "all_final_after_restart_s": time.monotonic() - restarted,
    }
    return figures


def database_outage(
    dep: Deployment,
    cluster: PostgresCluster,
    *,
    jobs: int,
    down_s: float = 4.0,
    timeout_s: float = 180,
) -> Figures:
    """Stop PostgreSQL for `down_s` seconds under load: the API answers 503, workers wait."""
    figures = Figures("database_outage")
    job_ids = [dep.submit(fault_spec(steps=4, epochs_per_step=3, seed=i)) for i in range(jobs)]
    wait_until(
        lambda: any(_max_step(dep, j) >= 0 for j in job_ids),
        timeout_s=timeout_s,
        what="a job to record a step",
    )
    cluster.stop()
    statuses: dict[int, int] = {}
    slowest = 0.0
    until = time.monotonic() + down_s
    while time.monotonic() < until:
        for method, path in (("GET", f"/v1/jobs/{job_ids[0]}"), ("POST", "/v1/jobs")):
            started = time.monotonic()
            body = fault_spec() if method == "POST" else None
            response = dep.api.request(method, path, json=body, headers=dep.headers)
            slowest = max(slowest, time.monotonic() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        time.sleep(0.05)
    cluster.start()
    restarted = time.monotonic()
    wait_until(
        lambda: dep.api.get(f"/v1/jobs/{job_ids[0]}", headers=dep.headers).status_code == 200,
        timeout_s=60,
        what="the API to answer again",
        every_s=0.1,
    )
    api_recovery = time.monotonic() - restarted
    dep.wait_final(job_ids, timeout_s=timeout_s)
    _tally(dep, figures, job_ids)
    figures.values = {
        "requests_during_outage": sum(statuses.values()),
        "status_counts": statuses,
        "slowest_answer_s": slowest,
        "api_recovery_s": api_recovery,
        "all_final_after_restart_s": time.monotonic() - restarted,
        "write_retries": dep.worker_logs().count("retrying in"),
        "takeovers": sum(dep.job(j).attempt > 1 for j in job_ids),
    }
    return figures


def storage_unreachable(dep: Deployment, *, timeout_s: float = 120) -> Figures:
    """The artifact root vanishes mid-job: the job fails clearly and lists no artifact."""
    figures = Figures("storage_unreachable")
    job_id = dep.submit(fault_spec(steps=4, epochs_per_step=2, seed=7))
    wait_until(
        lambda: _max_step(dep, job_id) >= 1 or dep.job(job_id).state in FINAL,
        timeout_s=timeout_s,
        what="the job's first step",
    )
    hidden = dep.artifact_dir.with_name("artifacts.hidden")
    dep.artifact_dir.rename(hidden)
    dep.artifact_dir.write_text("not a directory: the storage is gone")
    try:
        job = dep.wait_final([job_id], timeout_s=timeout_s)[job_id]
    finally:
        dep.artifact_dir.unlink()
        hidden.rename(dep.artifact_dir)
    figures.jobs = 1
    if job.state != "failed" or job.error_code != "storage_unavailable":
        figures.problems.append(f"ended {job.state} ({job.error_code}: {job.error_message})")
    if dep.store.list_artifacts(job_id):
        figures.problems.append("artifact rows were written")
    if dep.stored_keys(job_id, "artifacts"):
        figures.problems.append(f"files under artifacts/: {dep.stored_keys(job_id, 'artifacts')}")
    figures.values = {
        "state": job.state,
        "error_code": job.error_code,
        "error_message": job.error_message,
        "attempts": job.attempt,
    }
    return figures


def storage_partial_upload(dep: Deployment, *, timeout_s: float = 120) -> Figures:
    """weights.safetensors cannot be stored on the first try, after two other files were.

    The partial set must never be listed; the retry publishes the whole set once.
    """
    figures = Figures("storage_partial_upload")
    job_id = dep.submit(fault_spec(steps=3, epochs_per_step=1, seed=11))
    trap = dep.artifact_dir / job_prefix(TENANT, job_id) / "artifacts" / "weights.safetensors"
    trap.mkdir(parents=True)
    listed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while dep.job(job_id).state not in FINAL and time.monotonic() < deadline:
        listed.add(len(dep.store.list_artifacts(job_id)))
        time.sleep(0.02)
    dep.wait_final([job_id], timeout_s=5)
    _tally(dep, figures, [job_id])
    if listed - {0, 4}:
        figures.problems.append(f"a partial artifact set was listed: sizes {sorted(listed)}")
    failed_uploads = [
        line
        for line in dep.worker_logs().splitlines()
        if job_id in line and "weights.safetensors" in line and "IsADirectoryError" in line
    ]
    if not failed_uploads:
        figures.problems.append("the first upload of weights.safetensors did not fail")
    figures.values = {"failed_uploads": len(failed_uploads), "attempts": dep.job(job_id).attempt}
    return figures


def diverged(dep: Deployment, *, timeout_s: float = 120) -> Figures:
    """Fine-tuning turns NaN at step 2: failed, training_diverged, step 1's checkpoint kept."""
    figures = Figures("training_diverged")
    spec = fault_spec(steps=3, epochs_per_step=1, seed=3)
    spec["model"] = {
        "entrypoint": "tests.faults.diverging:build",
        "kwargs": {"features": 30, "classes": 2, "diverge_above": 0.3},
    }
    job_id = dep.submit(spec)
    job = dep.wait_final([job_id], timeout_s=timeout_s)[job_id]
    figures.jobs = 1
    checkpoints = dep.stored_keys(job_id, "checkpoints")
    latest_file = dep.artifact_dir / job_prefix(TENANT, job_id) / "checkpoints" / "LATEST"
    latest = latest_file.read_text().strip() if latest_file.is_file() else None
    if (job.state, job.error_code) != ("failed", "training_diverged"):
        figures.problems.append(f"ended {job.state} ({job.error_code}: {job.error_message})")
    if latest is None or not any(key.startswith(f"{latest}/") for key in checkpoints):
        figures.problems.append(f"no checkpoint kept: {checkpoints}")
    if dep.store.list_artifacts(job_id):
        figures.problems.append("a diverged job listed artifacts")
    figures.values = {
        "error_message": job.error_message,
        "latest_checkpoint": latest,
        "steps": [row.step for row in dep.store.list_steps(job_id)],
    }
    return figures


def max_runtime(dep: Deployment, *, timeout_s: float = 120) -> Figures:
    """A job with budget.max_runtime_s of 1 s and far more work stops, saves and says so."""
    figures = Figures("max_runtime")
    spec = fault_spec(steps=60, epochs_per_step=5, seed=5, budget={"max_runtime_s": 1.0})
    job_id = dep.submit(spec)
    dep.wait_final([job_id], timeout_s=timeout_s)
    _tally(dep, figures, [job_id])
    job = dep.job(job_id)
    result = job.result or {}
    if result.get("stop_reason") != "max_runtime":
        figures.problems.append(f"stop_reason {result.get('stop_reason')!r}")
    steps = dep.store.list_steps(job_id)
    if len(steps) >= 62:
        figures.problems.append("the whole schedule ran despite the budget")
    figures.values = {
        "state": job.state,
        "stop_reason": result.get("stop_reason"),
        "steps": len(steps),
        "sparsity": job.sparsity,
    }
    return figures
