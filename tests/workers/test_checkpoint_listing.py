"""A checkpoint listing that loses its directory mid-walk is a storage outage, not a bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.storage.local import FileStorage
from workers.checkpoints import CheckpointMirror
from workers.errors import StorageUnavailable

PREFIX = "tenants/acme/jobs/j/checkpoints/"


class VanishingStorage(FileStorage):
    """Writes work; every listing fails as a walk does when its directory is removed under it."""

    def list(self, prefix: str) -> list[str]:
        raise FileNotFoundError(2, "No such file or directory", str(self.root / prefix))


def test_pruning_old_checkpoints_on_a_vanished_storage_is_storage_unavailable(
    tmp_path: Path,
) -> None:
    step = tmp_path / "work" / "step-0001"
    step.mkdir(parents=True)
    (step / "state.json").write_text("{}")
    mirror = CheckpointMirror(VanishingStorage(tmp_path / "store"), prefix=PREFIX)
    with pytest.raises(StorageUnavailable, match="list checkpoints"):
        mirror.upload(step)


def test_a_listing_of_a_missing_prefix_is_still_empty(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "store")
    mirror = CheckpointMirror(storage, prefix=PREFIX)
    assert mirror.download(tmp_path / "dest") is None
    assert storage.list(PREFIX) == []
