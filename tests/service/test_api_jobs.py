from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from service.settings import ApiSettings
from service.store import JobStore


def queued_messages(redis_db: redis.Redis, queue: str = "gpu") -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in redis_db.lrange(queue, 0, -1)]


def message_args(message: dict[str, Any]) -> list[Any]:
    body = json.loads(base64.b64decode(message["body"]))
    return list(body[0])


def test_submit_stores_the_job_and_sends_only_its_id(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    response = api.post("/v1/jobs", json=tiny_spec(), headers=auth)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["state"] == "queued" and response.headers["location"] == f"/v1/jobs/{job['id']}"
    messages = queued_messages(redis_db)
    assert len(messages) == 1
    assert messages[0]["headers"]["task"] == "workers.prune"
    assert messages[0]["content-type"] == "application/json"
    assert message_args(messages[0]) == [job["id"]]
    fetched = api.get(f"/v1/jobs/{job['id']}", headers=auth).json()
    assert fetched["spec"]["prune"]["target_sparsity"] == 0.5


def test_queue_header_picks_the_queue(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    headers = {**auth, "X-Adaprune-Queue": "cpu-small"}
    job = api.post("/v1/jobs", json=tiny_spec(), headers=headers).json()
    assert job["queue"] == "cpu-small"
    assert [message_args(m) for m in queued_messages(redis_db, "cpu-small")] == [[job["id"]]]
    bad = api.post("/v1/jobs", json=tiny_spec(), headers={**auth, "X-Adaprune-Queue": "GPU!"})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "header.x-adaprune-queue"


def test_a_queue_no_worker_serves_is_refused_and_never_labels_a_metric(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    headers = {**auth, "X-Adaprune-Queue": "nobody-reads-this"}
    response = api.post("/v1/jobs", json=tiny_spec(), headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "unknown_queue"
    assert error["field"] == "header.x-adaprune-queue"
    assert "'nobody-reads-this' is not served here; served: gpu, cpu-small" in error["message"]
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []
    assert redis_db.llen("nobody-reads-this") == 0
    metrics = api.get("/metrics").text
    assert "nobody-reads-this" not in metrics
    assert 'adaprune_queue_depth{queue="cpu-small"} 0.0' in metrics


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"prune": {"target_sparsity": 1.5}}, "prune.target_sparsity"),
        ({"prune": {"target_sparsity": 0.5, "criterion": "random"}}, "prune.criterion"),
        ({"task": {"data": "http://example.com/task.npz"}}, "task.data"),
        ({"task": {"data": "file:///etc/passwd.npz"}}, "task.data"),
        ({"model": {"entrypoint": "evil.module:build"}}, "model.entrypoint"),
        ({"model": {"arch": "mlp", "entrypoint": "userpkg.m:f"}}, "model"),
        ({"model": {"arch": "mlp", "weights": "file:///etc/w.safetensors"}}, "model.weights"),
        ({"extra": 1}, "extra"),
        ({"prune": {"target_sparsity": 0.3, "granularity": "width"}}, "prune"),
        ({"prune": {"target_sparsity": 0.5, "method": "wanda"}}, "prune"),
        ({"prune": {"target_sparsity": 0.3, "granularity": "depth", "hidden": True}}, "prune"),
        ({"finetune": {"distill": True, "distill_temperature": 0}}, "finetune.distill_temperature"),
        ({"finetune": {"distill": True, "distill_weight": 1.5}}, "finetune.distill_weight"),
        (
            {"finetune": {"distill": True, "distill_hidden_weight": -0.5}},
            "finetune.distill_hidden_weight",
        ),
        ({"finetune": {"distill_hidden_weight": 1.0}}, "finetune.distill_hidden_weight"),
    ],
)
def test_bad_spec_is_refused_naming_the_field(
    api: TestClient,
    auth: dict[str, str],
    redis_db: redis.Redis,
    tiny_spec: Any,
    change: dict[str, Any],
    field: str,
) -> None:
    response = api.post("/v1/jobs", json={**tiny_spec(), **change}, headers=auth)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert redis_db.llen("gpu") == 0
    assert api.get("/v1/jobs", headers=auth).json()["items"] == []


def test_allowed_entrypoint_and_file_under_a_root_are_accepted(
    api: TestClient, auth: dict[str, str], settings: ApiSettings, tiny_spec: Any
) -> None:
    data = Path(settings.allowed_file_roots[0]) / "task.npz"
    spec = {
        **tiny_spec(),
        "model": {"entrypoint": "userpkg.models:build"},
        "task": {"data": f"file://{data}"},
    }
    assert api.post("/v1/jobs", json=spec, headers=auth).status_code == 201


def test_symlink_out_of_the_root_is_refused(
    api: TestClient, auth: dict[str, str], settings: ApiSettings, tiny_spec: Any, tmp_path: Path
) -> None:
    outside = tmp_path / "secret.npz"
    outside.write_bytes(b"x")
    link = Path(settings.allowed_file_roots[0]) / "link.npz"
    link.symlink_to(outside)
    spec = {**tiny_spec(), "task": {"data": f"file://{link}"}}
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422 and response.json()["error"]["field"] == "task.data"


@pytest.mark.parametrize("header", [None, "Bearer ap_wrong", "Basic abc", "Bearer "])
def test_missing_or_wrong_key_is_401(api: TestClient, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = api.get("/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthenticated"


def test_revoked_key_is_401(api: TestClient, api_store: JobStore, auth: dict[str, str]) -> None:
    from service.auth import revoke_key

    key = auth["Authorization"].removeprefix("Bearer ")
    with api_store.tx() as session:
        assert revoke_key(session, key)
    assert api.get("/v1/jobs", headers=auth).status_code == 401


def test_other_tenants_job_is_404(
    api: TestClient, api_store: JobStore, auth: dict[str, str], new_tenant: Any, tiny_spec: Any
) -> None:
    job = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    _, other_key = new_tenant(api_store, "other")
    other = {"Authorization": f"Bearer {other_key}"}
    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/steps"),
        ("GET", f"/v1/jobs/{job['id']}/artifacts"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
    ]:
        response = api.request(method, path, headers=other)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "job_not_found"
    assert api.get("/v1/jobs", headers=other).json()["items"] == []


def test_body_over_the_limit_is_413(api: TestClient, auth: dict[str, str], tiny_spec: Any) -> None:
    spec = {**tiny_spec(), "model": {"arch": "mlp", "kwargs": {"pad": "x" * 5000}}}
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_streamed_body_over_the_limit_is_413(api: TestClient, auth: dict[str, str]) -> None:
    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    headers = {**auth, "Content-Type": "application/json"}
    response = api.post("/v1/jobs", content=chunks(), headers=headers)
    assert response.status_code == 413


def test_active_job_cap_is_429(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    ids = [api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"] for _ in range(3)]
    response = api.post("/v1/jobs", json=tiny_spec(), headers=auth)
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    assert redis_db.llen("gpu") == 3
    api.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth)
    assert api.post("/v1/jobs", json=tiny_spec(), headers=auth).status_code == 201


def test_idempotent_resubmission(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    headers = {**auth, "Idempotency-Key": "order-42"}
    first = api.post("/v1/jobs", json=tiny_spec(), headers=headers)
    again = api.post("/v1/jobs", json=tiny_spec(), headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert redis_db.llen("gpu") == 1
    changed = api.post("/v1/jobs", json=tiny_spec(target_sparsity=0.6), headers=headers)
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_conflict"


def test_cancel_of_a_queued_job(api: TestClient, auth: dict[str, str], tiny_spec: Any) -> None:
    job = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    cancelled = api.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert (cancelled.json()["state"], cancelled.json()["cancel_requested"]) == ("cancelled", True)


def test_listing_filters_and_pages(api: TestClient, auth: dict[str, str], tiny_spec: Any) -> None:
    ids = [api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"] for _ in range(3)]
    api.post(f"/v1/jobs/{ids[0]}/cancel", headers=auth)
    page = api.get("/v1/jobs?limit=1&state=queued", headers=auth).json()
    assert [job["id"] for job in page["items"]] == [ids[2]]
    rest = api.get(f"/v1/jobs?state=queued&cursor={page['next_cursor']}", headers=auth).json()
    assert [job["id"] for job in rest["items"]] == [ids[1]] and rest["next_cursor"] is None
    assert api.get("/v1/jobs?state=bogus", headers=auth).status_code == 422
    assert api.get("/v1/jobs?cursor=zzz", headers=auth).status_code == 400


def test_steps_are_listed_in_order(
    api: TestClient, api_store: JobStore, auth: dict[str, str], tiny_spec: Any
) -> None:
    job = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()
    for step in (0, 2, 1):
        report = {
            "step": step,
            "target_sparsity": step / 4,
            "sparsity": step / 4,
            "metric": 0.9,
            "loss": 0.1,
            "decision": "baseline" if step == 0 else "keep",
            "seconds": 0.5,
            "epochs": 1,
        }
        api_store.record_step(job["id"], owner=None, attempt=1, report=report)
    steps = api.get(f"/v1/jobs/{job['id']}/steps", headers=auth).json()
    assert [(s["step"], s["sparsity"], s["decision"]) for s in steps] == [
        (0, 0.0, "baseline"),
        (1, 0.25, "keep"),
        (2, 0.5, "keep"),
    ]
    assert api.get(f"/v1/jobs/{job['id']}", headers=auth).json()["progress"] == 0.5
