"""Idempotency-Key: a retry is matched on the request body as sent, not on the filled-in spec."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.spec import JobSpec
from service.db.models import Job
from service.idempotency import body_digest, canonical
from service.store import JobStore, request_hash


def post_raw(api: TestClient, text: str, headers: dict[str, str], key: str = "order-7") -> Any:
    return api.post(
        "/v1/jobs",
        content=text.encode(),
        headers={**headers, "Idempotency-Key": key, "Content-Type": "application/json"},
    )


def test_canonical_form_ignores_spelling_not_content() -> None:
    assert canonical({"a": [1.0, 2.5, {"b": -3.0}]}) == {"a": [1, 2.5, {"b": -3}]}
    assert body_digest({"x": 1, "y": 0.5}, queue=None) == body_digest(
        {"y": 0.50, "x": 1.0}, queue=None
    )
    assert body_digest({"x": 1}, queue=None) != body_digest({"x": 2}, queue=None)
    assert body_digest({"x": 1}, queue=None) != body_digest({"x": 1}, queue="gpu")
    assert canonical(1e300) == 1e300 and isinstance(canonical(1e300), float)


def test_same_body_spelled_differently_is_the_same_job(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    body = tiny_spec()
    first = post_raw(api, json.dumps(body), auth)
    assert first.status_code == 201, first.text
    respelled = json.dumps(dict(reversed(list(body.items()))), indent=2).replace(
        '"target_sparsity": 0.5', '"target_sparsity": 0.50'
    )
    again = post_raw(api, respelled, auth)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert redis_db.llen("gpu") == 1


def test_the_stored_digest_covers_the_body_as_sent(
    api: TestClient, auth: dict[str, str], api_store: JobStore, tiny_spec: Any
) -> None:
    body = tiny_spec()
    job_id = post_raw(api, json.dumps(body), auth).json()["id"]
    with api_store.tx() as session:
        stored = session.get(Job, job_id)
        assert stored is not None
        digest = stored.request_hash
    # Independent of the defaults the server fills in, so a deploy that adds one cannot move it.
    assert digest == body_digest(body, queue=None)
    filled = JobSpec.model_validate(body).model_dump(mode="json")
    assert digest != request_hash(filled, queue="gpu")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"seed": 0}, id="explicit-default"),
        pytest.param({"prune": {"target_sparsity": 0.6}}, id="different-value"),
    ],
)
def test_a_different_body_under_the_same_key_is_a_conflict(
    api: TestClient,
    auth: dict[str, str],
    redis_db: redis.Redis,
    tiny_spec: Any,
    change: dict[str, Any],
) -> None:
    body = tiny_spec()
    assert post_raw(api, json.dumps(body), auth).status_code == 201
    changed = post_raw(api, json.dumps({**body, **change}), auth)
    assert changed.status_code == 409, changed.text
    assert changed.json()["error"]["code"] == "idempotency_conflict"
    assert redis_db.llen("gpu") == 1


def test_an_explicit_queue_header_is_part_of_the_request(
    api: TestClient, auth: dict[str, str], tiny_spec: Any
) -> None:
    body = json.dumps(tiny_spec())
    assert post_raw(api, body, auth).status_code == 201
    named = post_raw(api, body, {**auth, "X-Adaprune-Queue": "gpu"})
    assert named.status_code == 409


def test_a_job_stored_with_the_spec_digest_still_matches_its_retry(
    api: TestClient, auth: dict[str, str], api_store: JobStore, tiny_spec: Any
) -> None:
    body = tiny_spec()
    first = post_raw(api, json.dumps(body), auth, key="before")
    tenant_id = _tenant_of(api_store, first.json()["id"])
    filled = JobSpec.model_validate(body).model_dump(mode="json")
    # A row written before submissions were hashed as sent: no digest, so the spec's.
    old = api_store.create_job(
        tenant_id=tenant_id, spec=filled, queue="gpu", idempotency_key="legacy"
    )
    retry = post_raw(api, json.dumps(body), auth, key="legacy")
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == old.job.id


def _tenant_of(store: JobStore, job_id: str) -> int:
    with store.tx() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.tenant_id
