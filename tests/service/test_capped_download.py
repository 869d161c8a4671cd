"""s3:// task data downloads are capped: HEAD first, then a stream that stops past the limit."""

from __future__ import annotations

import uuid
from pathlib import Path

import boto3
import pytest

from core.errors import ResourceLimit
from core.uri import fetch


def _bucket_with(objects: dict[str, bytes]) -> str:
    client = boto3.client("s3")
    bucket = f"cap-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


def test_an_object_over_the_limit_is_refused_by_its_head_and_nothing_is_kept(
    aws_env: str, tmp_path: Path
) -> None:
    bucket = _bucket_with({"big.npz": bytes(3000), "small.npz": bytes(100)})
    with pytest.raises(ResourceLimit, match=r"2\.9 KiB, over the download limit of 2\.0 KiB"):
        fetch(f"s3://{bucket}/big.npz", cache_dir=tmp_path, max_bytes=2048)
    assert list(tmp_path.iterdir()) == []  # no partial file left
    path = fetch(f"s3://{bucket}/small.npz", cache_dir=tmp_path, max_bytes=2048)
    assert path.read_bytes() == bytes(100)


def test_the_stream_stops_past_the_limit_whatever_the_head_said(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = _bucket_with({"grows.npz": bytes(5 * 1024)})
    real_client = boto3.client

    def lying_head(*args: object, **kwargs: object) -> object:
        client = real_client(*args, **kwargs)  # type: ignore[call-overload]
        client.head_object = lambda **_: {"ContentLength": 10}
        return client

    monkeypatch.setattr(boto3, "client", lying_head)
    with pytest.raises(ResourceLimit, match=r"more than 2\.0 KiB"):
        fetch(f"s3://{bucket}/grows.npz", cache_dir=tmp_path, max_bytes=2048)
    assert list(tmp_path.iterdir()) == []
