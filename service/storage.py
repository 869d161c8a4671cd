"""Artifact storage behind one interface: a local directory (file://) or S3 (s3://)."""

from __future__ import annotations

import abc
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from service.errors import InvalidKey

MAX_KEY_LENGTH = 1024
DEFAULT_CHUNK = 1 << 16
_TEMP_PREFIX = ".tmp-"


def check_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a safe relative object key.

    Refused: empty keys (unless `prefix`), absolute paths, backslashes, NUL, empty segments
    and '.' or '..' segments. A prefix may end with '/'.

    Raises:
        InvalidKey: naming the key and the rule it breaks.
    """
    if not key:
        if prefix:
            return key
        raise InvalidKey("storage key is empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidKey(f"storage key {key[:40]!r}... is longer than {MAX_KEY_LENGTH}")
    if "\x00" in key or "\\" in key:
        raise InvalidKey(f"storage key {key!r} contains NUL or a backslash")
    if key.startswith("/"):
        raise InvalidKey(f"storage key {key!r} is absolute")
    parts = key.split("/")
    if prefix and parts[-1] == "":
        parts = parts[:-1]
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidKey(f"storage key {key!r} has an empty, '.' or '..' segment")
    return key


def job_prefix(tenant: str, job_id: str) -> str:
    """The storage prefix of a job: tenants/{tenant}/jobs/{job}/."""
    return check_key(f"tenants/{tenant}/jobs/{job_id}/", prefix=True)


def artifact_key(tenant: str, job_id: str, name: str) -> str:
    """The key of a job's artifact: tenants/{tenant}/jobs/{job}/artifacts/{name}."""
    return check_key(f"{job_prefix(tenant, job_id)}artifacts/{name}")


class ArtifactStorage(abc.ABC):
    """Where artifacts and checkpoints live. Every key is checked with `check_key`."""

    @abc.abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the file at `path` under `key`; readers never see a partial object."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Store `data` under `key` atomically."""

    @abc.abstractmethod
    def get_file(self, key: str, dest: Path) -> None:
        """Copy the object to `dest` (written beside it, then renamed).

        Raises:
            FileNotFoundError: no such object.
        """

    @abc.abstractmethod
    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        """The object's bytes in chunks of at most `chunk` bytes.

        Raises:
            FileNotFoundError: no such object (raised before the first chunk).
        """

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key that starts with `prefix`, sorted."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many were deleted."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes.

        Raises:
            FileNotFoundError: no such object.
        """

    @abc.abstractmethod
    def presigned_url(self, key: str, ttl: int) -> str | None:
        """A URL that serves the object for `ttl` seconds without credentials, or None when the
        backend cannot make one (file://: the API streams the bytes itself)."""


class FileStorage(ArtifactStorage):
    """Objects as files under a root directory; writes go to a temporary file then os.replace."""

    def __init__(self, root: Path) -> None:
        if not root.is_absolute():
            raise ValueError(f"storage root {root} must be absolute")
        self.root = root

    def _path(self, key: str, *, prefix: bool = False) -> Path:
        return self.root / check_key(key, prefix=prefix)

    def _write_atomic(self, dest: Path, source: Iterator[bytes]) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=_TEMP_PREFIX)
        try:
            with os.fdopen(handle, "wb") as out:
                for block in source:
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, dest)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        self._write_atomic(dest, _read_chunks(path, DEFAULT_CHUNK))

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write_atomic(self._path(key), iter((data,)))

    def get_file(self, key: str, dest: Path) -> None:
        source = self._existing(key)
        _copy_atomic(source, dest)

    def open_stream(self, key: str, chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
        source = self._existing(key)
        return _read_chunks(source, chunk)

    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no object {key!r}")
        return path

    def list(self, prefix: str) -> list[str]:
        check_key(prefix, prefix=True)
        base = self.root / prefix.rpartition("/")[0]
        if not base.is_dir():
            return []
        keys = []
        for path in base.rglob("*"):
            if path.is_file() and not path.name.startswith(_TEMP_PREFIX):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            (self.root / key).unlink(missing_ok=True)
        if prefix.endswith("/") and prefix and (self.root / prefix).is_dir():
            shutil.rmtree(self.root / prefix, ignore_errors=True)
        return len(keys)

    def size(self, key: str) -> int:
        return self._existing(key).stat().st_size

    def presigned_url(self, key: str, ttl: int) -> str | None:
        check_key(key)
        return None


def _read_chunks(path: Path, chunk: int) -> Iterator[bytes]:
    if chunk < 1:
        raise ValueError(f"chunk {chunk} must be positive")
    # Opened before the generator starts so a missing or unreadable file fails at call time.
    handle = path.open("rb")

    def chunks() -> Iterator[bytes]:
        with handle:
            while block := handle.read(chunk):
                yield block

    return chunks()


def _copy_atomic(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=dest.parent, prefix=_TEMP_PREFIX)
    os.close(handle)
    try:
        shutil.copyfile(source, temp)
        os.replace(temp, dest)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


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
        from service.storage_s3 import S3Storage

        return S3Storage(bucket=parts.netloc, prefix=parts.path.strip("/"))
    raise ValueError(f"artifact URL scheme of {url!r} is not file or s3")
