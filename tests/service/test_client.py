from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn

from service.client import AdapruneClient, ChecksumMismatch, ClientError
from service.errors import InvalidKey
from service.main import create_app
from service.settings import ApiSettings
from service.storage import artifact_key, storage_from_url
from service.store import JobStore, check_artifact_name


def serve(settings: ApiSettings) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def client(settings: ApiSettings, auth: dict[str, str]) -> Iterator[AdapruneClient]:
    key = auth["Authorization"].removeprefix("Bearer ")
    for url in serve(settings):
        with AdapruneClient(url, api_key=key) as api_client:
            yield api_client


WORKER = "worker-1"


def record(store: JobStore, settings: ApiSettings, job_id: str, name: str, data: bytes) -> str:
    key = artifact_key("acme", job_id, name)
    storage_from_url(settings.artifact_url).put_bytes(key, data)
    digest = hashlib.sha256(data).hexdigest()
    assert store.record_artifact(
        job_id, owner=WORKER, name=name, storage_key=key, size_bytes=len(data), sha256=digest
    )
    return digest


def publish(
    store: JobStore,
    settings: ApiSettings,
    job_id: str,
    *,
    manifest_digest: str | None = None,
    manifest: bool = True,
) -> bytes:
    """Run the job as a worker would: claim it, store its files, and mark it succeeded."""
    assert store.claim(job_id, owner=WORKER, stale_after_s=30, max_attempts=3) is not None
    weights = b"\x00safetensors" * 1000
    digest = record(store, settings, job_id, "weights.safetensors", weights)
    files = {"weights.safetensors": {"sha256": manifest_digest or digest, "bytes": 1}}
    if manifest:
        record(store, settings, job_id, "manifest.json", json.dumps({"files": files}).encode())
    assert store.finish(job_id, owner=WORKER, state="succeeded", result={})
    return weights


def test_submit_get_cancel_and_wait(client: AdapruneClient, tiny_spec: Any) -> None:
    job = client.submit(tiny_spec(), idempotency_key="once")
    assert client.submit(tiny_spec(), idempotency_key="once")["id"] == job["id"]
    assert client.get(job["id"])["state"] == "queued"
    assert client.cancel(job["id"])["state"] == "cancelled"
    assert client.wait(job["id"], poll_s=0.05, timeout_s=5)["state"] == "cancelled"


def test_wait_reports_each_step_once(
    client: AdapruneClient, api_store: JobStore, tiny_spec: Any
) -> None:
    job_id = client.submit(tiny_spec())["id"]
    claim = api_store.claim(job_id, owner="w", stale_after_s=30, max_attempts=3)
    assert claim is not None
    seen: list[int] = []

    def work() -> None:
        for step in range(3):
            report = {
                "step": step,
                "target_sparsity": 0.1 * step,
                "sparsity": 0.1 * step,
                "metric": 0.9,
                "loss": 0.2,
                "decision": "keep",
                "seconds": 0.1,
                "epochs": 1,
            }
            assert api_store.record_step(job_id, owner="w", attempt=1, report=report)
            time.sleep(0.1)
        api_store.finish(job_id, owner="w", state="succeeded", result={"sparsity": 0.2})

    worker = threading.Thread(target=work)
    worker.start()
    final = client.wait(job_id, on_step=lambda step: seen.append(step["step"]), poll_s=0.05)
    worker.join()
    assert final["state"] == "succeeded" and seen == [0, 1, 2]


def test_errors_carry_the_api_code(client: AdapruneClient, tiny_spec: Any) -> None:
    with pytest.raises(ClientError) as missing:
        client.get("00000000-0000-0000-0000-000000000000")
    assert (missing.value.status, missing.value.code) == (404, "job_not_found")
    with pytest.raises(ClientError) as invalid:
        client.submit(tiny_spec(target_sparsity=2))
    assert invalid.value.code == "validation_error"


def test_pull_downloads_and_verifies_every_artifact(
    client: AdapruneClient,
    api_store: JobStore,
    settings: ApiSettings,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    job_id = client.submit(tiny_spec())["id"]
    weights = publish(api_store, settings, job_id)
    out = client.pull(job_id, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "weights.safetensors"]
    assert (out / "weights.safetensors").read_bytes() == weights
    with pytest.raises(FileExistsError):
        client.pull(job_id, out)


def test_pull_recreates_a_hugging_face_model_directory(
    client: AdapruneClient,
    api_store: JobStore,
    settings: ApiSettings,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    job_id = client.submit(tiny_spec())["id"]
    assert api_store.claim(job_id, owner=WORKER, stale_after_s=30, max_attempts=3) is not None
    contents = {
        "model/config.json": b'{"model_type": "bert"}',
        "model/model.safetensors": b"w" * 99,
    }
    files = {
        name: {"sha256": record(api_store, settings, job_id, name, data), "bytes": len(data)}
        for name, data in contents.items()
    }
    record(api_store, settings, job_id, "manifest.json", json.dumps({"files": files}).encode())
    assert api_store.finish(job_id, owner=WORKER, state="succeeded", result={})
    out = client.pull(job_id, tmp_path / "out")
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "model" / "model.safetensors").read_bytes() == b"w" * 99
    for bad in ("model/../manifest.json", "other/config.json", "model/sub/x.json"):
        with pytest.raises(InvalidKey):
            check_artifact_name(bad)


def test_pull_refuses_a_listing_mismatch_and_leaves_nothing(
    client: AdapruneClient,
    api_store: JobStore,
    settings: ApiSettings,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    job_id = client.submit(tiny_spec())["id"]
    publish(api_store, settings, job_id)
    key = artifact_key("acme", job_id, "weights.safetensors")
    storage_from_url(settings.artifact_url).put_bytes(key, b"tampered")
    with pytest.raises(ChecksumMismatch, match=r"weights\.safetensors"):
        client.pull(job_id, tmp_path / "out")
    assert list(tmp_path.glob("*out*")) == []


def test_pull_refuses_a_manifest_mismatch(
    client: AdapruneClient,
    api_store: JobStore,
    settings: ApiSettings,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    job_id = client.submit(tiny_spec())["id"]
    publish(api_store, settings, job_id, manifest_digest="sha256:" + "0" * 64)
    with pytest.raises(ChecksumMismatch, match="manifest"):
        client.pull(job_id, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_pull_follows_presigned_s3_redirects(
    settings: ApiSettings,
    auth: dict[str, str],
    api_store: JobStore,
    aws_env: str,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    boto3.client("s3").create_bucket(Bucket="adaprune-pull")
    s3_settings = settings.model_copy(update={"artifact_url_env": "s3://adaprune-pull/a"})
    key = auth["Authorization"].removeprefix("Bearer ")
    for url in serve(s3_settings):
        with AdapruneClient(url, api_key=key) as api_client:
            job_id = api_client.submit(tiny_spec())["id"]
            weights = publish(api_store, s3_settings, job_id)
            out = api_client.pull(job_id, tmp_path / "out")
    assert (out / "weights.safetensors").read_bytes() == weights
