"""Artifact storage in a local directory (file://): atomic writes through a temporary file."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from service.storage.base import DEFAULT_CHUNK, ArtifactStorage, check_key

_TEMP_PREFIX = ".tmp-"


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
