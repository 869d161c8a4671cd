"""The events a real worker writes for a job: claim, phases, steps in words, warnings, outcome."""

from __future__ import annotations

from typing import Any

from tests.support.deployment import tiny_spec
from tests.workers.conftest import Service


def events_of(service: Service, job_id: str) -> list[dict[str, Any]]:
    response = service.api.get(f"/v1/jobs/{job_id}/events?limit=1000", headers=service.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def test_a_job_tells_its_story(shared: Service) -> None:
    job_id = shared.submit(tiny_spec())
    job = shared.wait_final(job_id)
    assert job.state == "succeeded"
    events = events_of(shared, job_id)
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "claimed" and kinds[-1] == "finished"
    assert events[0]["data"]["attempt"] == 1 and job.lease_owner in events[0]["message"]
    phases = [e["data"]["phase"] for e in events if e["kind"] == "phase"]
    assert phases[0] == "baseline" and "exporting" in phases and "finetuning" in phases
    steps = [e for e in events if e["kind"] == "step"]
    assert len(steps) == len(shared.store.list_steps(job_id))
    assert steps[0]["message"].startswith("step 0: dense baseline, accuracy 0.")
    first = steps[1]
    # "step 1: 0.00 -> 0.20 sparsity, accuracy 0.9xx (drop 0.0xx <= 0.01): scheduled"
    assert first["message"].startswith("step 1: 0.00 -> ")
    assert " sparsity, accuracy " in first["message"] and "(drop " in first["message"]
    assert first["message"].endswith(f": {first['data']['decision']}")
    assert first["data"]["sparsity"] > 0 and "drop" in first["data"]
    # the story ends with the outcome, asked against reached
    assert events[-1]["message"].startswith("succeeded")
    assert "of 0.600 asked" in events[-1]["message"]
    assert not any(e["kind"] == "warning" for e in events)  # a trained model is not at chance
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)


def test_a_dense_model_at_chance_level_is_warned_about(shared: Service) -> None:
    spec = tiny_spec(steps=1)
    spec["finetune"]["pretrain_epochs"] = 0  # an untrained MLP: about 1 in 10 right on digits
    job_id = shared.submit(spec)
    shared.wait_final(job_id)
    warnings = [e for e in events_of(shared, job_id) if e["kind"] == "warning"]
    assert len(warnings) == 1, warnings
    warning = warnings[0]
    assert warning["level"] == "warning"
    assert (
        "is at chance level (10 classes): pruning results will not mean much"
        in (warning["message"])
    )
    assert warning["message"].startswith("dense accuracy 0.")
    assert warning["data"]["num_classes"] == 10


def test_a_bad_spec_ends_with_its_error_in_the_log(shared: Service) -> None:
    spec = tiny_spec()
    spec["prune"]["target_sparsity"] = 1.5  # only the worker sees it: it skips the API
    created = shared.store.create_job(tenant_id=shared.tenant_id, spec=spec, queue=shared.queue)
    shared.enqueue(created.job.id)
    shared.wait_final(created.job.id)
    events = events_of(shared, created.job.id)
    assert [e["kind"] for e in events] == ["claimed", "finished"]
    assert events[-1]["level"] == "error"
    assert events[-1]["message"].startswith("failed: spec_invalid: prune.target_sparsity")
