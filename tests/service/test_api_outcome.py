"""The job response says whether the target was reached, from the stored result."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from service.store import JobStore


def test_a_max_job_is_accepted_and_its_missed_target_is_shown(
    api: TestClient, api_store: JobStore, auth: dict[str, str], tiny_spec: Any
) -> None:
    created = api.post(
        "/v1/jobs", json=tiny_spec(target_sparsity="max", max_sparsity=0.9), headers=auth
    )
    assert created.status_code in (200, 201, 202), created.text
    job = created.json()
    assert job["target_sparsity"] == 0.9
    assert job["target_reached"] is None and job["target_missed_reason"] is None
    assert api_store.claim(job["id"], owner="w1", stale_after_s=60, max_attempts=3)
    reason = "max_epochs at 0.610: the budget of 40 fine-tuning epochs was spent before 0.90"
    result = {"sparsity": 0.61, "target_reached": False, "target_missed_reason": reason}
    assert api_store.finish(job["id"], owner="w1", state="succeeded", result=result)
    shown = api.get(f"/v1/jobs/{job['id']}", headers=auth).json()
    assert shown["target_reached"] is False
    assert shown["target_missed_reason"] == reason
    assert shown["sparsity"] == 0.61


def test_a_bad_target_is_refused_naming_the_field(
    api: TestClient, auth: dict[str, str], tiny_spec: Any
) -> None:
    refused = api.post("/v1/jobs", json=tiny_spec(target_sparsity="most"), headers=auth)
    assert refused.status_code == 422
    assert "prune.target_sparsity" in refused.text
