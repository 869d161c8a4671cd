"""Turn a `file://` or `s3://` URI into a local file path."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.download import capped_s3_download


def fetch(uri: str, *, cache_dir: Path, max_bytes: int | None = None) -> Path:
    """Return a local path holding the bytes the URI names.

    `file:///abs/path` is returned as is; `s3://bucket/key` is downloaded with boto3 (which reads
    its endpoint and credentials from the usual AWS environment variables) into `cache_dir`,
    written to a temporary file and renamed so that a reader never sees a partial file.

    Args:
        uri: a `file://` or `s3://` URI.
        cache_dir: where downloaded objects are stored; created if missing.
        max_bytes: refuse a download larger than this (HEAD first, then a capped stream).

    Returns:
        The path of a regular file.

    Raises:
        FileNotFoundError: the file or object does not exist (the message names the URI).
        ValueError: the URI is malformed or its scheme is neither `file` nor `s3`.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return _local(uri, parts.netloc, parts.path)
    if parts.scheme == "s3":
        return _download_s3(
            uri,
            bucket=parts.netloc,
            key=parts.path.lstrip("/"),
            cache_dir=cache_dir,
            max_bytes=max_bytes,
        )
    raise ValueError(f"URI scheme {parts.scheme!r} of {uri!r} is not supported; use file or s3")


def _local(uri: str, host: str, path: str) -> Path:
    if host not in ("", "localhost"):
        raise ValueError(f"{uri!r}: file URIs must name a local path (file:///abs/path)")
    local = Path(unquote(path))
    if not local.is_absolute():
        raise ValueError(f"{uri!r}: file URIs must be absolute (file:///abs/path)")
    if not local.is_file():
        raise FileNotFoundError(f"{uri!r}: no such file")
    return local


def _download_s3(
    uri: str, *, bucket: str, key: str, cache_dir: Path, max_bytes: int | None
) -> Path:
    if not bucket or not key:
        raise ValueError(f"{uri!r}: s3 URIs need a bucket and a key (s3://bucket/key)")
    import boto3
    from botocore.exceptions import ClientError

    # The name keeps the key's suffix readable while the hash keeps distinct URIs apart.
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    target = cache_dir / f"{digest}-{Path(key).name}"
    cache_dir.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=cache_dir, prefix=".part-")
    os.close(handle)
    try:
        capped_s3_download(
            boto3.client("s3"),
            uri=uri,
            bucket=bucket,
            key=key,
            target=Path(temp_name),
            max_bytes=max_bytes,
        )
        os.replace(temp_name, target)
    except ClientError as error:
        Path(temp_name).unlink(missing_ok=True)
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchKey", "NoSuchBucket"):
            raise FileNotFoundError(f"{uri!r}: no such object") from error
        raise
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target
