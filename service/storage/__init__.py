"""Artifact storage behind one interface: a local directory (file://) or S3 (s3://)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.storage.base import (
    DEFAULT_CHUNK,
    MAX_KEY_LENGTH,
    ArtifactStorage,
    artifact_key,
    check_key,
    job_prefix,
)
from service.storage.local import FileStorage

__all__ = [
    "DEFAULT_CHUNK",
    "MAX_KEY_LENGTH",
    "ArtifactStorage",
    "FileStorage",
    "artifact_key",
    "check_key",
    "job_prefix",
    "storage_from_url",
]


def storage_from_url(url: str) -> ArtifactStorage:
    """Storage for `file:///abs/dir` or `s3://bucket/prefix`.

    S3 endpoint and credentials come from the standard AWS_* environment variables.

    Raises:
        ValueError: another scheme, a relative file path or an S3 URL without a bucket.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"artifact URL {url!r} must be file:///absolute/dir")
        root = Path(unquote(parts.path))
        if not root.is_absolute():
            raise ValueError(f"artifact URL {url!r} must be file:///absolute/dir")
        return FileStorage(root)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"artifact URL {url!r} needs a bucket (s3://bucket/prefix)")
        from service.storage.s3 import S3Storage

        return S3Storage(bucket=parts.netloc, prefix=parts.path.strip("/"))
    raise ValueError(f"artifact URL scheme of {url!r} is not file or s3")
