"""The storage interface and its object keys: what every backend implements and checks."""

from __future__ import annotations

import abc
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from service.errors import InvalidKey

MAX_KEY_LENGTH = 1024
DEFAULT_CHUNK = 1 << 16
# Readiness probes write and delete a small object here, outside every tenant's prefix.
PROBE_PREFIX = "_readyz/"


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

    def probe(self) -> None:
        """Write a small object and delete it again: raises what the storage raises.

        A full disk, a read-only mount, a vanished root or an unreachable S3 endpoint all
        fail here, so a readiness check can say so.
        """
        key = check_key(f"{PROBE_PREFIX}{socket.gethostname()}-{os.getpid()}")
        self.put_bytes(key, b"ok\n")
        self.delete_prefix(key)
