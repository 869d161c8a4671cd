"""A one-shot job's checkpoint in the artifact storage: each block file once, progress after."""

from __future__ import annotations

import json
from pathlib import Path

from service.storage.local import FileStorage
from workers.checkpoints import CheckpointMirror

PREFIX = "tenants/acme/jobs/j/checkpoints/"


class CountingStorage(FileStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.puts: list[str] = []

    def put_file(self, key: str, path: Path) -> None:
        self.puts.append(key)
        super().put_file(key, path)


def _blocks(directory: Path, done: int) -> Path:
    oneshot = directory / "oneshot"
    oneshot.mkdir(parents=True, exist_ok=True)
    for index in range(done):
        (oneshot / f"block-{index:04d}.safetensors").write_bytes(bytes([index]) * 8)
    (oneshot / "progress.json").write_text(json.dumps({"blocks_done": done}))
    return oneshot


def test_block_files_are_uploaded_once_and_restored_with_the_blocks_done(tmp_path):
    storage = CountingStorage(tmp_path / "store")
    mirror = CheckpointMirror(storage, prefix=PREFIX)
    mirror.upload(_blocks(tmp_path / "work", 1))
    mirror.upload(_blocks(tmp_path / "work", 2))
    names = [key.removeprefix(PREFIX) for key in storage.puts]
    assert names == [
        "oneshot/block-0000.safetensors",
        "oneshot/progress.json",
        "oneshot/block-0001.safetensors",
        "oneshot/progress.json",
    ]
    resumed = CheckpointMirror(storage, prefix=PREFIX)
    assert resumed.download(tmp_path / "again") == 2
    restored = tmp_path / "again" / "oneshot"
    assert sorted(p.name for p in restored.iterdir()) == [
        "block-0000.safetensors",
        "block-0001.safetensors",
        "progress.json",
    ]
    assert (restored / "block-0001.safetensors").read_bytes() == bytes([1]) * 8
    # the next attempt uploads only the blocks it prunes
    storage.puts.clear()
    resumed.upload(_blocks(tmp_path / "again", 3))
    assert [key.removeprefix(PREFIX) for key in storage.puts] == [
        "oneshot/block-0002.safetensors",
        "oneshot/progress.json",
    ]
    resumed.delete()
    assert CheckpointMirror(storage, prefix=PREFIX).download(tmp_path / "none") is None
