"""S3 (or any S3-compatible store) artifact storage through boto3."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import ClientError

from service.storage.base import DEFAULT_CHUNK, ArtifactStorage, check_key

_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Storage(ArtifactStorage):
    """Objects under `s3://bucket/prefix/`; an S3 object only appears once fully uploaded."""

    def __init__(self, *, bucket: str, prefix: str = "", client: Any = None) -> None:
        if prefix:
            check_key(prefix, prefix=True)
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix else ""
        # boto3 reads AWS_ENDPOINT_URL, credentials and region from the environment.
        self.client = client if client is not None else boto3.client("s3")

    def _key(self, key: str, *, prefix: bool = False) -> str:
        return self.prefix + check_key(key, prefix=prefix)

    def put_file(self, key: str, path: Path) -> None:
        full = self._key(key)
        with path.open("rb") as source:
            self.client.upload_fileobj(source, self.bucket, full)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_file(self, key: str, dest: Path) -> None:
        full = self._key(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                self.client.download_fileobj(self.bucket, full, out)
            os.replace(temp, dest)
        except ClientError as error:
            Path(temp).unlink(missing_ok=True)
            if _missing(error):
                raise FileNotFoundError(f"no object {key!r}") from error
            raise
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        if chunk < 1:
            raise ValueError(f"chunk {chunk} must be positive")
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"no object {key!r}") from error
            raise

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk)
            finally:
                body.close()

        return chunks()

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix, prefix=True)
        keys: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full
        ):
            keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        return sorted(keys)

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _missing(error):
                return False
            raise
        return True

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": self.prefix + key} for key in keys[start : start + 1000]]
            self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)

    def size(self, key: str) -> int:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as error:
            if _missing(error):
                raise FileNotFoundError(f"no object {key!r}") from error
            raise
        return int(head["ContentLength"])

    def presigned_url(self, key: str, ttl: int) -> str | None:
        if ttl < 1:
            raise ValueError(f"ttl {ttl} must be at least one second")
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(key)}, ExpiresIn=ttl
        )
        return str(url)


def _missing(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _MISSING
