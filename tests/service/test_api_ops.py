from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from service.storage import artifact_key, storage_from_url
from service.store import JobStore

ROOT = Path(__file__).resolve().parents[2]


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def put_artifact(
    store: JobStore, settings: ApiSettings, job_id: str, name: str, data: bytes
) -> str:
    key = artifact_key("acme", job_id, name)
    storage_from_url(settings.artifact_url).put_bytes(key, data)
    digest = hashlib.sha256(data).hexdigest()
    store.record_artifact(
        job_id, owner=None, name=name, storage_key=key, size_bytes=len(data), sha256=digest
    )
    return digest


@pytest.fixture
def job_id(api: TestClient, auth: dict[str, str], tiny_spec: Any) -> str:
    return str(api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"])


def test_recorded_artifact_downloads_with_its_checksum(
    api: TestClient, api_store: JobStore, settings: ApiSettings, auth: dict[str, str], job_id: str
) -> None:
    digest = put_artifact(api_store, settings, job_id, "manifest.json", b'{"ok": true}')
    listing = api.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()
    assert [(a["name"], a["sha256"], a["size_bytes"]) for a in listing] == [
        ("manifest.json", digest, 12)
    ]
    response = api.get(listing[0]["url"], headers=auth)
    assert response.status_code == 200 and response.content == b'{"ok": true}'
    assert response.headers["x-checksum-sha256"] == digest
    assert response.headers["content-type"].startswith("application/json")


def test_unrecorded_or_traversing_names_are_refused(
    api: TestClient, api_store: JobStore, settings: ApiSettings, auth: dict[str, str], job_id: str
) -> None:
    storage_from_url(settings.artifact_url).put_bytes(
        artifact_key("acme", job_id, "secret.bin"), b"not recorded"
    )
    base = f"/v1/jobs/{job_id}/artifacts"
    assert api.get(f"{base}/secret.bin", headers=auth).status_code == 404
    for name in ("..%2F..%2Fapi.db", "%2E%2E", "a%5Cb", ".hidden", "x%00y"):
        response = api.get(f"{base}/{name}", headers=auth)
        assert response.status_code in (400, 404), name
        assert b"not recorded" not in response.content


def test_s3_artifact_redirects_to_a_presigned_url(
    settings: ApiSettings, api_store: JobStore, auth: dict[str, str], aws_env: str, tiny_spec: Any
) -> None:
    import boto3

    boto3.client("s3").create_bucket(Bucket="adaprune-api")
    s3_settings = settings.model_copy(update={"artifact_url_env": "s3://adaprune-api/art"})
    with TestClient(create_app(s3_settings)) as api:
        job_id = api.post("/v1/jobs", json=tiny_spec(), headers=auth).json()["id"]
        put_artifact(api_store, s3_settings, job_id, "steps.csv", b"step,sparsity\n")
        response = api.get(
            f"/v1/jobs/{job_id}/artifacts/steps.csv", headers=auth, follow_redirects=False
        )
    assert response.status_code == 307
    assert response.headers["location"].startswith(aws_env)


def test_metrics_expose_the_contract_names(
    api: TestClient, auth: dict[str, str], job_id: str
) -> None:
    api.get(f"/v1/jobs/{job_id}", headers=auth)
    text = api.get("/metrics").text
    assert 'adaprune_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"}' in (
        text
    )
    assert "adaprune_http_request_duration_seconds_bucket" in text
    assert "adaprune_jobs_submitted_total 1.0" in text
    assert 'adaprune_jobs{state="queued"} 1.0' in text
    assert 'adaprune_queue_depth{queue="gpu"} 1.0' in text
    assert "adaprune_running_job_max_heartbeat_age_seconds 0.0" in text
    assert job_id not in text


def test_readiness_and_liveness(api: TestClient) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok", "storage": "ok"}


def test_readiness_names_a_storage_that_cannot_be_written(
    settings: ApiSettings, tmp_path: Path
) -> None:
    gone = tmp_path / "gone"
    gone.write_text("a file where the storage root should be")
    update = {"artifact_url_env": f"file://{gone}/artifacts"}
    with TestClient(create_app(settings.model_copy(update=update))) as api:
        ready = api.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["checks"]["storage"] == "unavailable: NotADirectoryError (ENOTDIR)"
    assert (body["checks"]["database"], body["checks"]["redis"]) == ("ok", "ok")
    assert body["error"] == {"code": "not_ready", "message": "unavailable: storage"}
    assert str(gone) not in ready.text


def test_readiness_names_a_dead_database(settings: ApiSettings) -> None:
    dead = f"postgresql://postgres@127.0.0.1:{dead_port()}/adaprune"
    with TestClient(create_app(settings.model_copy(update={"database_url_env": dead}))) as api:
        ready = api.get("/readyz")
        submit = api.get("/v1/jobs", headers={"Authorization": "Bearer ap_x"})
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"].startswith("unavailable")
    assert ready.json()["checks"]["redis"] == "ok"
    assert submit.status_code == 503
    assert submit.json()["error"]["code"] == "database_unavailable"


def test_dead_broker_fails_the_job_and_answers_503(
    settings: ApiSettings, api_store: JobStore, auth: dict[str, str], tiny_spec: Any
) -> None:
    dead = f"redis://127.0.0.1:{dead_port()}/15"
    headers = {**auth, "Idempotency-Key": "retry-me"}
    with TestClient(create_app(settings.model_copy(update={"redis_url_env": dead}))) as api:
        response = api.post("/v1/jobs", json=tiny_spec(), headers=headers)
        ready = api.get("/readyz").json()
        jobs = api.get("/v1/jobs", headers=auth).json()["items"]
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "enqueue_failed"
    assert [(job["state"], job["error"]["code"]) for job in jobs] == [("failed", "enqueue_failed")]
    assert ready["checks"]["redis"].startswith("unavailable")
    with TestClient(create_app(settings)) as api:
        retried = api.post("/v1/jobs", json=tiny_spec(), headers=headers)
    assert retried.status_code == 201 and retried.json()["id"] != jobs[0]["id"]


def test_unknown_route_uses_the_error_shape(api: TestClient) -> None:
    response = api.get("/v2/nothing")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_api_process_never_imports_torch() -> None:
    code = (
        "import sys, service.main, service.client, service.storage.s3, service.db.migrate;"
        "service.main.create_app();"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    env = {"PATH": "/usr/bin:/bin", "ADAPRUNE_HOME": "/tmp/adaprune-torch-check"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
