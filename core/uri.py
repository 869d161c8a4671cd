"""Turn a `file://` or `s3://` URI into a local file path; name a job's own artifact.

`artifact://JOB_ID/NAME` names file NAME of the tenant's own job JOB_ID in the service's
artifact storage; only the service resolves it (to the tenant's prefix), never this module.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from core.contract.artifact_uri import ARTIFACT_SCHEME
from core.download import capped_s3_download


def open_no_links(path: str) -> int:
    """Open the absolute, already resolved `path` for reading without following any link.

    Every component is opened relative to its parent with O_NOFOLLOW, so a link put in place
    of any directory or of the file after `path` was checked makes the open fail instead of
    leaving the checked tree; the result must be a regular file.

    Returns:
        A read-only file descriptor (the caller closes it).

    Raises:
        PermissionError: a component is a link (or became one) or the file is not regular.
        FileNotFoundError: a component does not exist.
    """
    if not os.path.isabs(path):
        raise ValueError(f"{path!r} is not absolute")
    parts = [part for part in path.split("/") if part]
    if not parts or any(part in (".", "..") for part in parts):
        raise ValueError(f"{path!r} is not a resolved file path")
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            following = _open_step(part, directory, os.O_RDONLY | os.O_DIRECTORY, path)
            os.close(directory)
            directory = following
        # O_NONBLOCK: a FIFO put there opens at once (and is then refused) instead of hanging.
        handle = _open_step(parts[-1], directory, os.O_RDONLY | os.O_NONBLOCK, path)
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise PermissionError(f"{path!r} is not a regular file")
    os.set_blocking(handle, True)
    return handle


def _open_step(name: str, directory: int, flags: int, path: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PermissionError(
                f"{path!r} changed into or through a symbolic link after it was checked"
            ) from error
        raise


def _open_dir_no_links(path: str) -> int:
    """Open the absolute, resolved directory `path` with no link followed on any component."""
    if not os.path.isabs(path):
        raise ValueError(f"{path!r} is not absolute")
    parts = [part for part in path.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"{path!r} is not a resolved directory path")
    directory = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        try:
            following = _open_step(part, directory, os.O_RDONLY | os.O_DIRECTORY, path)
        finally:
            os.close(directory)
        directory = following
    return directory


def copy_dir_no_links(path: str, dest: Path, *, depth: int = 0) -> Path:
    """Copy the regular files inside the resolved directory `path` into `dest`.

    The directory is opened as `open_no_links` opens a file, and so is every file in it;
    sub-directories are copied `depth` levels down (0: a flat `save_pretrained` directory;
    1: a `datasets` DatasetDict, one directory per split), deeper ones are left out.

    Raises:
        PermissionError: the directory or an entry in it is a link (or became one).
        FileNotFoundError: the directory does not exist.
        NotADirectoryError: `path` is a file.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(f"{path!r} is not a directory")
    handle = _open_dir_no_links(path)
    try:
        entries = sorted(os.listdir(handle))
        kinds = {name: os.stat(name, dir_fd=handle, follow_symlinks=False) for name in entries}
    finally:
        os.close(handle)
    dest.mkdir(parents=True, exist_ok=True)
    for name in entries:
        mode = kinds[name].st_mode
        if stat.S_ISLNK(mode):
            raise PermissionError(f"{path!r} holds a symbolic link ({name}); links are not read")
        if stat.S_ISREG(mode):
            copy_no_links(os.path.join(path, name), dest / name)
        elif stat.S_ISDIR(mode) and depth > 0:
            copy_dir_no_links(os.path.join(path, name), dest / name, depth=depth - 1)
    return dest


def copy_no_links(path: str, dest: Path) -> Path:
    """Copy the file at the resolved `path` to `dest`, opened with `open_no_links`.

    The copy is written beside `dest` and renamed, so `dest` appears whole or not at all.
    """
    with os.fdopen(open_no_links(path), "rb") as source:
        dest.parent.mkdir(parents=True, exist_ok=True)
        out_handle, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
        try:
            with os.fdopen(out_handle, "wb") as out:
                while chunk := source.read(1 << 20):
                    out.write(chunk)
            os.replace(temp_name, dest)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    return dest


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
    if parts.scheme == ARTIFACT_SCHEME:
        raise ValueError(f"{uri!r}: artifact:// URIs name a job's files; the service reads them")
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


def fetch_dir(uri: str, *, cache_dir: Path, depth: int = 0) -> Path:
    """Return a local directory holding the files the URI names (a `save_pretrained` one).

    `file:///abs/dir` is returned as is; `s3://bucket/prefix/` has every object directly under
    the prefix downloaded into a directory of `cache_dir`, and sub-prefixes `depth` levels down
    into sub-directories of the same names (0: a flat `save_pretrained` directory; 1: a
    `datasets` DatasetDict, one sub-prefix per split); deeper ones are left out.

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
    # the same prefix fetched to another depth holds other files: its own directory
    target = cache_dir / f"{hashlib.sha256(f'{uri}#{depth}'.encode()).hexdigest()[:16]}-dir"
    client = boto3.client("s3")
    objects = _s3_objects(client, bucket, prefix, depth=depth)
    if not objects:
        raise FileNotFoundError(f"{uri!r}: no objects under the prefix")
    for relative, key in objects:
        destination = target.joinpath(*relative)
        destination.parent.mkdir(parents=True, exist_ok=True)
        fetched = _download_s3(
            f"s3://{bucket}/{key}", bucket=bucket, key=key, cache_dir=cache_dir, max_bytes=None
        )
        os.replace(fetched, destination)
    return target


def _s3_objects(
    client: Any, bucket: str, prefix: str, *, depth: int
) -> list[tuple[list[str], str]]:
    """(path relative to `prefix` as names, key) of every object directly under `prefix` and
    under its sub-prefixes `depth` levels down. A sub-prefix whose name could leave the
    directory ("", ".", "..") is left out, like an object key ending in "/", and so is one
    named like an object beside it (a file and a directory cannot share a name)."""
    found: list[tuple[list[str], str]] = []
    below: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix, Delimiter="/"
    ):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            if name not in ("", ".", "..") and "/" not in name:
                found.append(([name], item["Key"]))
        below += [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
    if depth > 0:
        files = {relative[0] for relative, _ in found}
        for sub in below:
            name = sub[len(prefix) :].rstrip("/")
            if name in ("", ".", "..") or "/" in name or name in files:
                continue
            found += [
                ([name, *relative], key)
                for relative, key in _s3_objects(client, bucket, sub, depth=depth - 1)
            ]
    return found
