"""Turn a `file://` or `s3://` URI into a local file path."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit


def fetch(uri: str, *, cache_dir: Path) -> Path:
    """Return a local path holding the bytes the URI names.

    `file:///abs/path` is returned as is; `s3://bucket/key` is downloaded with boto3 (which reads
    its endpoint and credentials from the usual AWS environment variables) into `cache_dir`,
    written to a temporary file and renamed so that a reader never sees a partial file.

    Args:
        uri: a `file://` or `s3://` URI.
        cache_dir: where downloaded objects are stored; created if missing.

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
            uri, bucket=parts.netloc, key=parts.path.lstrip("/"), cache_dir=cache_dir
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


def _download_s3(uri: str, *, bucket: str, key: str, cache_dir: Path) -> Path:
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
        boto3.client("s3").download_file(bucket, key, temp_name)
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


def fetch_dir(uri: str, *, cache_dir: Path) -> Path:
    """Return a local directory holding the files the URI names (a `save_pretrained` one).

    `file:///abs/dir` is returned as is; `s3://bucket/prefix/` has every object directly under
    the prefix downloaded into a directory of `cache_dir` (sub-prefixes are not descended).

    Raises:
        FileNotFoundError: no such directory, or no object under the prefix.
        ValueError: the URI is malformed or its scheme is neither `file` nor `s3`.
    """
    parts = urlsplit(uri)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"{uri!r}: file URIs must name a local path (file:///abs/path)")
        local = Path(unquote(parts.path))
        if not local.is_absolute():
            raise ValueError(f"{uri!r}: file URIs must be absolute (file:///abs/path)")
        if not local.is_dir():
            raise FileNotFoundError(f"{uri!r}: no such directory")
        return local
    if parts.scheme != "s3":
        raise ValueError(f"URI scheme {parts.scheme!r} of {uri!r} is not supported; use file or s3")
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    if not bucket or not prefix:
        raise ValueError(f"{uri!r}: s3 URIs need a bucket and a prefix (s3://bucket/prefix/)")
    import boto3

    prefix = prefix.rstrip("/") + "/"
    target = cache_dir / f"{hashlib.sha256(uri.encode()).hexdigest()[:16]}-dir"
    client = boto3.client("s3")
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/"
        )
        for item in page.get("Contents", [])
        if not item["Key"].endswith("/")
    ]
    if not keys:
        raise FileNotFoundError(f"{uri!r}: no objects under the prefix")
    target.mkdir(parents=True, exist_ok=True)
    for key in keys:
        fetched = _download_s3(f"s3://{bucket}/{key}", bucket=bucket, key=key, cache_dir=cache_dir)
        os.replace(fetched, target / Path(key).name)
    return target
