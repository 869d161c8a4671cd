"""Bounded jobs on a real worker process: sizes refused before allocating, a memory limit that
fails one job and spares the worker, budget and cancel in pre-training, fair dispatch."""

from __future__ import annotations

import time
from typing import Any

from service.auth import create_key
from tests.support.deployment import tiny_spec
from tests.workers.conftest import Service

LONG_PRETRAINING = {"pretrain_epochs": 5000, "epochs_per_step": 1, "final_epochs": 1}


def _spec(**changes: Any) -> dict[str, Any]:
    spec = tiny_spec(steps=1)
    for part, values in changes.items():
        spec[part] = {**spec.get(part, {}), **values}
    return spec


def test_a_400m_parameter_model_fails_once_as_resource_limit_and_the_worker_goes_on(
    shared: Service,
) -> None:
    job_id = shared.submit(_spec(model={"kwargs": {"hidden": [20000, 20000]}}))
    job = shared.wait_final(job_id, timeout_s=240)
    assert (job.state, job.error_code, job.attempt) == ("failed", "resource_limit", 1)
    assert job.error_message is not None and "ADAPRUNE_MAX_PARAMS" in job.error_message
    assert "Traceback" not in job.error_message
    after = shared.wait_final(shared.submit(_spec()), timeout_s=120)
    assert after.state == "succeeded"


def test_a_width_of_2_to_the_70_is_refused_at_the_api(shared: Service) -> None:
    response = shared.api.post(
        "/v1/jobs", json=_spec(model={"kwargs": {"hidden": [2**70]}}), headers=shared.headers
    )
    assert response.status_code == 422
    assert "2**53" in response.text and "hidden" in response.text


def test_a_cancel_during_pre_training_ends_the_job_within_seconds(shared: Service) -> None:
    job_id = shared.submit(_spec(finetune=LONG_PRETRAINING))
    shared.wait(
        job_id, lambda job: job.state == "running" and job.phase == "baseline", timeout_s=240
    )
    time.sleep(1.0)  # well inside the 5000 epochs of pre-training
    asked = time.monotonic()
    shared.api.post(f"/v1/jobs/{job_id}/cancel", headers=shared.headers)
    job = shared.wait_final(job_id, timeout_s=30)
    assert (job.state, job.error_code) == ("cancelled", "cancelled")
    assert time.monotonic() - asked < 10


def test_a_tiny_runtime_budget_stops_pre_training(shared: Service) -> None:
    job_id = shared.submit(_spec(finetune=LONG_PRETRAINING, budget={"max_runtime_s": 2}))
    job = shared.wait_final(job_id, timeout_s=90)
    assert job.state == "succeeded", job.error_message
    assert job.result is not None and job.result["stop_reason"] == "max_runtime"
    # 5000 epochs would take minutes; the budget ends pre-training at 2 s, and what follows
    # (evaluation, the dense copy, the step-0 checkpoint) takes seconds on a loaded machine
    assert job.result["seconds"] < 30 and job.result["epochs"] == 0


def test_an_allocation_past_the_job_memory_limit_fails_that_job_and_the_worker_lives_on(
    fresh: Service,
) -> None:
    fresh.env["ADAPRUNE_JOB_MEMORY_LIMIT_BYTES"] = str(700 << 20)
    worker = fresh.start_worker()
    # 36 M parameters: under the parameter and estimate limits, over 700 MiB once trained
    big = fresh.submit(_spec(model={"kwargs": {"hidden": [6000, 6000]}}))
    job = fresh.wait_final(big, timeout_s=120)
    assert (job.state, job.error_code, job.attempt) == ("failed", "resource_limit", 1)
    assert job.error_message is not None and "ADAPRUNE_JOB_MEMORY_LIMIT_BYTES" in job.error_message
    assert worker.poll() is None
    small = fresh.wait_final(fresh.submit(_spec()), timeout_s=120)
    assert small.state == "succeeded"


def test_one_tenants_backlog_does_not_make_another_tenant_wait(fresh: Service) -> None:
    with fresh.store.tx() as session:
        other_key = create_key(session, "beta")
    other = {"Authorization": f"Bearer {other_key}", "X-Adaprune-Queue": fresh.queue}
    backlog = [fresh.submit(_spec()) for _ in range(4)]
    response = fresh.api.post("/v1/jobs", json=_spec(), headers=other)
    assert response.status_code == 201, response.text
    late = str(response.json()["id"])
    fresh.start_worker()
    for job_id in [*backlog, late]:
        job = fresh.wait_final(job_id, timeout_s=180)
        assert (job.state, job.attempt) == ("succeeded", 1)  # each run once, none taken over
    started = sorted([*backlog, late], key=lambda job_id: fresh.job(job_id).started_at)
    # the first message runs the oldest job; the next one serves the tenant never served
    assert started[:2] == [backlog[0], late]
