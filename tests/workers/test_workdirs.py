"""workers.workdirs: the directories a killed attempt left are removed by the next claim."""

from __future__ import annotations

from pathlib import Path

from workers.workdirs import clear_earlier_attempts, earlier_attempts

JOB = "7d3c9f1e-0000-4000-8000-000000000001"
OTHER = "7d3c9f1e-0000-4000-8000-000000000002"


def test_only_the_jobs_own_directories_are_removed(tmp_path: Path) -> None:
    root = tmp_path / "work"
    (root / f"{JOB}-a1" / "checkpoints").mkdir(parents=True)
    (root / f"{JOB}-a1" / "checkpoints" / "step-0001.safetensors").write_bytes(b"x")
    (root / f"{JOB}-b2").mkdir()
    (root / f"{OTHER}-c3").mkdir()
    (root / f"{JOB}.lock").write_text("not a directory")

    assert [p.name for p in earlier_attempts(root, JOB)] == [f"{JOB}-a1", f"{JOB}-b2"]
    assert clear_earlier_attempts(root, JOB) == 2
    assert sorted(p.name for p in root.iterdir()) == [f"{JOB}.lock", f"{OTHER}-c3"]


def test_a_link_named_like_the_job_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "work"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (root / f"{JOB}-link").symlink_to(outside, target_is_directory=True)

    assert clear_earlier_attempts(root, JOB) == 0
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_missing_work_root_is_nothing_to_clear(tmp_path: Path) -> None:
    assert clear_earlier_attempts(tmp_path / "absent", JOB) == 0
