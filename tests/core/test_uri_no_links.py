"""Opening a checked path with no link followed, and the artifact:// form."""

from __future__ import annotations

import os
import threading
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.contract.artifact_uri import parse_artifact_uri
from core.spec import JobSpec
from core.uri import copy_no_links, fetch, open_no_links

JOB = str(uuid.uuid4())


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """(root, outside): a root holding `sub/mine.npz`, and a secret file outside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "mine.npz").write_bytes(b"mine")
    outside = tmp_path / "secret.npz"
    outside.write_bytes(b"secret")
    return root, outside


def test_a_plain_file_is_opened_and_copied(tree: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tree
    copy = copy_no_links(str(root / "sub" / "mine.npz"), tmp_path / "copy" / "c.npz")
    assert copy.read_bytes() == b"mine"


def test_a_link_swapped_in_for_the_file_after_the_check_is_refused(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, outside = tree
    checked = os.path.realpath(root / "sub" / "mine.npz")  # the check sees a plain file
    os.unlink(checked)
    os.symlink(outside, checked)
    with pytest.raises(PermissionError, match="symbolic link"):
        copy_no_links(checked, tmp_path / "c.npz")
    assert not (tmp_path / "c.npz").exists()


def test_a_link_swapped_in_for_a_directory_after_the_check_is_refused(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, outside = tree
    checked = os.path.realpath(root / "sub" / "mine.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.npz").write_bytes(outside.read_bytes())
    os.rename(root / "sub", tmp_path / "moved")
    os.symlink(elsewhere, root / "sub")
    with pytest.raises(PermissionError, match="symbolic link"):
        open_no_links(checked)


def test_a_link_swapped_back_and_forth_never_yields_the_outside_file(
    tree: tuple[Path, Path], tmp_path: Path
) -> None:
    root, outside = tree
    checked = os.path.realpath(root / "sub" / "mine.npz")
    stop = threading.Event()

    def swap() -> None:
        spare = root / "sub" / "spare"
        while not stop.is_set():
            os.symlink(outside, spare)
            os.replace(spare, checked)  # now a link to the secret
            (root / "sub" / "plain").write_bytes(b"mine")
            os.replace(root / "sub" / "plain", checked)  # a plain file again

    swapper = threading.Thread(target=swap)
    swapper.start()
    seen: set[bytes] = set()
    try:
        for attempt in range(300):
            try:
                seen.add(copy_no_links(checked, tmp_path / f"c{attempt}.npz").read_bytes())
            except (PermissionError, FileNotFoundError):
                seen.add(b"refused")
    finally:
        stop.set()
        swapper.join()
    assert b"secret" not in seen
    assert b"mine" in seen or b"refused" in seen


def test_a_directory_or_a_fifo_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(PermissionError, match="regular file"):
        open_no_links(str(tmp_path))
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    with pytest.raises(PermissionError):
        open_no_links(str(fifo))


@pytest.mark.parametrize("path", ["relative.npz", "/a/../b.npz", "/"])
def test_only_resolved_absolute_paths_are_opened(path: str) -> None:
    with pytest.raises(ValueError):
        open_no_links(path)


def test_artifact_uri_names_a_job_and_one_plain_file() -> None:
    assert parse_artifact_uri(f"artifact://{JOB}/weights.safetensors") == (
        JOB,
        "weights.safetensors",
    )


@pytest.mark.parametrize(
    "uri",
    [
        "artifact://not-a-job/weights.safetensors",
        f"artifact://{JOB.upper()}/weights.safetensors",
        f"artifact://{JOB}/sub/weights.safetensors",
        f"artifact://{JOB}/../weights.safetensors",
        f"artifact://{JOB}/.hidden.safetensors",
        f"artifact://{JOB}/",
    ],
)
def test_malformed_artifact_uris_are_refused_by_the_spec(uri: str) -> None:
    spec = {
        "model": {"arch": "mlp", "weights": uri},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5},
    }
    with pytest.raises(ValidationError, match=r"model\.weights"):
        JobSpec.model_validate(spec)


def test_the_spec_accepts_artifact_uris_for_weights_and_data() -> None:
    spec = JobSpec.model_validate(
        {
            "model": {"arch": "mlp", "weights": f"artifact://{JOB}/weights.safetensors"},
            "task": {"data": f"artifact://{JOB}/task.npz"},
            "prune": {"target_sparsity": 0.5},
        }
    )
    assert spec.model.weights is not None and spec.task.data is not None


def test_an_artifact_uri_is_never_read_outside_the_service(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="the service reads them"):
        fetch(f"artifact://{JOB}/weights.safetensors", cache_dir=tmp_path)
