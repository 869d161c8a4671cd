"""Mirror a job's engine checkpoints into the artifact storage, and fetch them back to resume.

Layout under tenants/{t}/jobs/{j}/checkpoints/: `dense.safetensors`, `step-NNNN/...` and
`LATEST` (the name of the newest complete step directory). LATEST is written after the step's
files, so a reader that follows it never finds a partial checkpoint.

A one-shot job's checkpoint is one directory, `oneshot/`: a file per finished block (written
once, so each is uploaded once) and `progress.json`, uploaded after the block files; LATEST
then names `oneshot`, and the step restored is the number of blocks done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from core.contract.layout import (
    CHECKPOINT_DENSE,
    CHECKPOINT_LATEST,
    CHECKPOINT_STATE,
    CHECKPOINTS_KEPT,
    ONESHOT_DIR,
    ONESHOT_PROGRESS,
    oneshot_block_name,
)
from service.storage import ArtifactStorage
from workers.errors import StorageUnavailable
from workers.retry import STORAGE_TRIES, retry_for

LATEST = CHECKPOINT_LATEST
DENSE = CHECKPOINT_DENSE
KEEP = CHECKPOINTS_KEPT
_STEP_DIR = re.compile(r"^step-\d{4,}$")
T = TypeVar("T")


def _once(what: str, call: Callable[..., T], *args: Any, reading: bool) -> T:
    # A listing is never `reading`: a missing prefix lists as empty, so a FileNotFoundError
    # from one means the storage vanished under the walk.
    try:
        return call(*args)
    except FileNotFoundError:
        if reading:  # a missing object is an answer; a write that loses its directory is not
            raise
        raise StorageUnavailable(f"{what}: storage location vanished") from None
    except Exception as error:  # file systems and S3 clients fail in many ways
        raise StorageUnavailable(f"{what}: {type(error).__name__}: {error}") from error


def storage_call(what: str, call: Callable[..., T], *args: Any, reading: bool = False) -> T:
    """Run `call(*args)`, trying up to STORAGE_TRIES times with a short backoff.

    Raises:
        FileNotFoundError: when `reading`, the object does not exist (not retried).
        StorageUnavailable: every try failed; the message names the operation and the error.
    """
    return retry_for(
        what,
        lambda: _once(what, call, *args, reading=reading),
        errors=(StorageUnavailable,),
        tries=STORAGE_TRIES,
        first_delay_s=0.5,
    )


class CheckpointMirror:
    """Uploads each local checkpoint and restores the newest one on another machine."""

    def __init__(self, storage: ArtifactStorage, *, prefix: str) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"checkpoint prefix {prefix!r} must end with '/'")
        self.storage = storage
        self.prefix = prefix
        self._dense_stored = False
        self._blocks_stored: set[str] = set()

    def upload(self, step_dir: Path) -> None:
        """Store the checkpoint `step_dir` (and the dense weights beside it), then LATEST.

        Older step directories beyond the newest two are deleted from the storage.

        Raises:
            StorageUnavailable: the storage failed.
        """
        name = step_dir.name
        if name == ONESHOT_DIR:
            self._upload_oneshot(step_dir)
            return
        if not _STEP_DIR.match(name):
            raise ValueError(f"{step_dir} is not a step-NNNN checkpoint directory")
        dense = step_dir.parent / DENSE
        if not self._dense_stored and dense.is_file():
            storage_call("upload dense weights", self.storage.put_file, self.prefix + DENSE, dense)
            self._dense_stored = True
        for path in sorted(step_dir.iterdir()):
            if path.is_file():
                key = f"{self.prefix}{name}/{path.name}"
                storage_call(f"upload {key}", self.storage.put_file, key, path)
        storage_call("write LATEST", self.storage.put_bytes, self.prefix + LATEST, name.encode())
        self._prune_old()

    def _upload_oneshot(self, directory: Path) -> None:
        """Store the block files not stored yet, then progress.json, then LATEST."""
        for path in sorted(directory.iterdir()):
            name = path.name
            if name == ONESHOT_PROGRESS or name.startswith(".") or not path.is_file():
                continue
            if name not in self._blocks_stored:
                key = f"{self.prefix}{ONESHOT_DIR}/{name}"
                storage_call(f"upload {key}", self.storage.put_file, key, path)
                self._blocks_stored.add(name)
        key = f"{self.prefix}{ONESHOT_DIR}/{ONESHOT_PROGRESS}"
        storage_call(f"upload {key}", self.storage.put_file, key, directory / ONESHOT_PROGRESS)
        storage_call(
            "write LATEST", self.storage.put_bytes, self.prefix + LATEST, ONESHOT_DIR.encode()
        )

    def _download_oneshot(self, dest: Path) -> int:
        keys = storage_call("list checkpoint", self.storage.list, f"{self.prefix}{ONESHOT_DIR}/")
        try:
            for key in keys:
                relative = key[len(self.prefix) :]
                storage_call(
                    f"download {key}", self.storage.get_file, key, dest / relative, reading=True
                )
        except FileNotFoundError as error:
            raise StorageUnavailable(f"checkpoint {ONESHOT_DIR} is incomplete: {error}") from error
        progress = dest / ONESHOT_DIR / ONESHOT_PROGRESS
        try:
            done = int(json.loads(progress.read_text())["blocks_done"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise StorageUnavailable(f"checkpoint {ONESHOT_DIR}: {error}") from error
        # a block file past `done` may be from an upload cut short: the next attempt's replaces it
        self._blocks_stored = {oneshot_block_name(index) for index in range(done)}
        return done

    def _prune_old(self) -> None:
        keys = storage_call("list checkpoints", self.storage.list, self.prefix)
        names = sorted({k[len(self.prefix) :].split("/", 1)[0] for k in keys})
        steps = [n for n in names if _STEP_DIR.match(n)]
        for old in steps[:-KEEP]:
            storage_call(f"delete {old}", self.storage.delete_prefix, f"{self.prefix}{old}/")

    def download(self, dest: Path) -> int | None:
        """Fetch the newest checkpoint into `dest` (the engine's checkpoint directory).

        Returns:
            The checkpoint's step (for a one-shot job: the blocks done), or None when the
            storage holds no checkpoint of this job.

        Raises:
            StorageUnavailable: the storage failed or its LATEST names a broken checkpoint.
        """
        dest.mkdir(parents=True, exist_ok=True)
        pointer = dest / f".{LATEST}.download"
        try:
            storage_call(
                "read LATEST", self.storage.get_file, self.prefix + LATEST, pointer, reading=True
            )
        except FileNotFoundError:
            return None
        name = pointer.read_text().strip()
        pointer.unlink()
        if name == ONESHOT_DIR:
            return self._download_oneshot(dest)
        if not _STEP_DIR.match(name):
            raise StorageUnavailable(f"checkpoint pointer {self.prefix}{LATEST} holds {name!r}")
        keys = storage_call("list checkpoint", self.storage.list, f"{self.prefix}{name}/")
        try:
            for key in [*keys, self.prefix + DENSE]:
                relative = key[len(self.prefix) :]
                storage_call(
                    f"download {key}", self.storage.get_file, key, dest / relative, reading=True
                )
        except FileNotFoundError as error:
            raise StorageUnavailable(f"checkpoint {name} is incomplete: {error}") from error
        self._dense_stored = True
        state = json.loads((dest / name / CHECKPOINT_STATE).read_text())
        (dest / LATEST).write_text(name)
        return int(state["step"])

    def delete(self) -> None:
        """Remove every checkpoint of the job from the storage (after it ended)."""
        storage_call("delete checkpoints", self.storage.delete_prefix, self.prefix)
