from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.uri import fetch, fetch_dir
from tests.support.processes import free_port


def test_file_uri_returns_the_path_itself(tmp_path: Path) -> None:
    path = tmp_path / "task.npz"
    path.write_bytes(b"data")
    assert fetch(path.as_uri(), cache_dir=tmp_path / "cache") == path
    assert not (tmp_path / "cache").exists()


def test_missing_file_raises_file_not_found_naming_the_uri(tmp_path: Path) -> None:
    uri = (tmp_path / "absent.npz").as_uri()
    with pytest.raises(FileNotFoundError, match=r"absent\.npz"):
        fetch(uri, cache_dir=tmp_path)


def test_a_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fetch(tmp_path.as_uri(), cache_dir=tmp_path)


def test_file_uri_with_a_remote_host_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="local path"):
        fetch("file://example.com/etc/passwd", cache_dir=tmp_path)


@pytest.mark.parametrize("uri", ["http://example.com/t.npz", "ftp://host/t.npz", "t.npz"])
def test_unknown_scheme_is_refused_by_name(tmp_path: Path, uri: str) -> None:
    scheme = uri.split("://")[0] if "://" in uri else ""
    with pytest.raises(ValueError, match=f"scheme '{scheme}'"):
        fetch(uri, cache_dir=tmp_path)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = Path(sys.executable).parent / "moto_server"
    process = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        yield endpoint
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.integration
def test_s3_uri_is_downloaded_into_the_cache(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="tasks")
    client.put_object(Bucket="tasks", Key="team/mine.npz", Body=b"npz bytes")
    cache = tmp_path / "cache"

    path = fetch("s3://tasks/team/mine.npz", cache_dir=cache)

    assert path.parent == cache
    assert path.name.endswith("mine.npz")
    assert path.read_bytes() == b"npz bytes"
    assert [p.name for p in cache.iterdir()] == [path.name]
    with pytest.raises(FileNotFoundError, match=re.escape("s3://tasks/team/absent.npz")):
        fetch("s3://tasks/team/absent.npz", cache_dir=cache)
    assert [p.name for p in cache.iterdir()] == [path.name]


def test_a_model_directory_comes_from_a_path_or_an_s3_prefix(
    s3_endpoint: str, tmp_path: Path
) -> None:
    import boto3

    local = tmp_path / "model"
    local.mkdir()
    assert fetch_dir(local.as_uri(), cache_dir=tmp_path / "c") == local
    with pytest.raises(FileNotFoundError, match="no such directory"):
        fetch_dir((tmp_path / "absent").as_uri(), cache_dir=tmp_path / "c")
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    for name, body in (("config.json", b"{}"), ("model.safetensors", b"w"), ("sub/x", b"no")):
        client.put_object(Bucket="models", Key=f"team/bert/{name}", Body=body)
    directory = fetch_dir("s3://models/team/bert/", cache_dir=tmp_path / "cache")
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.safetensors"]
    assert (directory / "config.json").read_bytes() == b"{}"
    with pytest.raises(FileNotFoundError, match="no objects under the prefix"):
        fetch_dir("s3://models/team/none/", cache_dir=tmp_path / "cache")
