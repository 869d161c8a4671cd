from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from service.errors import InvalidKey
from service.storage import ArtifactStorage, FileStorage, artifact_key, check_key, storage_from_url

KEY = "tenants/acme/jobs/j1/artifacts/weights.safetensors"


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStorage]:
    if request.param == "file":
        yield storage_from_url(f"file://{tmp_path / 'store'}")
        return
    request.getfixturevalue("aws_env")
    bucket = f"adaprune-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield storage_from_url(f"s3://{bucket}/root/prefix")


def source_file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path


def test_put_then_get_round_trips_the_bytes(storage: ArtifactStorage, tmp_path: Path) -> None:
    data = os.urandom(200_000)
    storage.put_file(KEY, source_file(tmp_path, data))
    storage.get_file(KEY, tmp_path / "out" / "copy.bin")
    assert (tmp_path / "out" / "copy.bin").read_bytes() == data
    assert storage.size(KEY) == len(data)
    assert storage.exists(KEY)


def test_stream_yields_bounded_chunks(storage: ArtifactStorage) -> None:
    data = os.urandom(10_000)
    storage.put_bytes(KEY, data)
    chunks = list(storage.open_stream(KEY, chunk=4096))
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 4096


def test_list_and_delete_by_prefix(storage: ArtifactStorage) -> None:
    for name in ("a.json", "b.csv"):
        storage.put_bytes(f"tenants/acme/jobs/j1/artifacts/{name}", b"x")
    storage.put_bytes("tenants/acme/jobs/j10/artifacts/a.json", b"y")
    prefix = "tenants/acme/jobs/j1/"
    assert storage.list(prefix) == [
        "tenants/acme/jobs/j1/artifacts/a.json",
        "tenants/acme/jobs/j1/artifacts/b.csv",
    ]
    assert storage.delete_prefix(prefix) == 2
    assert storage.list(prefix) == []
    assert storage.list("tenants/acme/") == ["tenants/acme/jobs/j10/artifacts/a.json"]


def test_missing_object_raises_file_not_found(storage: ArtifactStorage, tmp_path: Path) -> None:
    assert not storage.exists(KEY)
    with pytest.raises(FileNotFoundError):
        storage.open_stream(KEY)
    with pytest.raises(FileNotFoundError):
        storage.get_file(KEY, tmp_path / "x")
    with pytest.raises(FileNotFoundError):
        storage.size(KEY)
    assert not (tmp_path / "x").exists()


def test_failed_put_leaves_no_object(storage: ArtifactStorage, tmp_path: Path) -> None:
    storage.put_bytes(KEY, b"old")
    unreadable = tmp_path / "missing.bin"
    with pytest.raises(FileNotFoundError):
        storage.put_file(KEY, unreadable)
    with pytest.raises(IsADirectoryError):
        storage.put_file("tenants/acme/jobs/j1/artifacts/new.bin", tmp_path)
    assert b"".join(storage.open_stream(KEY)) == b"old"
    assert storage.list("tenants/") == [KEY]


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "a/../b", "..", "a\\b", "a\x00b", "a//b", "./a", "a/."]
)
def test_unsafe_keys_are_refused(storage: ArtifactStorage, key: str) -> None:
    with pytest.raises(InvalidKey):
        storage.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        storage.exists(key)


def test_prefix_may_end_with_a_slash_but_keys_may_not() -> None:
    assert check_key("tenants/acme/", prefix=True) == "tenants/acme/"
    with pytest.raises(InvalidKey):
        check_key("tenants/acme/")
    assert artifact_key("acme", "j1", "steps.csv") == "tenants/acme/jobs/j1/artifacts/steps.csv"


def test_file_storage_has_no_presigned_url(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.put_bytes(KEY, b"x")
    assert storage.presigned_url(KEY, 60) is None


def test_file_put_never_exposes_a_partial_file(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "root")
    storage.put_bytes(KEY, b"complete")
    target = tmp_path / "root" / KEY

    def broken() -> Iterator[bytes]:
        yield b"half"
        raise OSError("disk went away")

    with pytest.raises(OSError, match="disk went away"):
        storage._write_atomic(target, broken())
    assert target.read_bytes() == b"complete"
    assert sorted(p.name for p in target.parent.iterdir()) == ["weights.safetensors"]


def test_s3_presigned_url_serves_the_object(aws_env: str) -> None:
    bucket = f"adaprune-{secrets.token_hex(4)}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    storage = storage_from_url(f"s3://{bucket}/p")
    storage.put_bytes(KEY, b"signed bytes")
    url = storage.presigned_url(KEY, 60)
    assert url is not None and url.startswith(aws_env)
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"signed bytes"
    objects = boto3.client("s3").list_objects_v2(Bucket=bucket)["Contents"]
    assert [item["Key"] for item in objects] == [f"p/{KEY}"]


def test_storage_url_must_be_file_or_s3() -> None:
    with pytest.raises(ValueError, match="http"):
        storage_from_url("http://example.com/x")
    with pytest.raises(ValueError, match="absolute"):
        storage_from_url("file://relative/dir")
