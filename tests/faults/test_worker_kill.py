"""SIGKILL the worker that runs a job, twice: the job still ends once, like an uninterrupted run,
and the work directories of the killed attempts are gone."""

from __future__ import annotations

from pathlib import Path

from tests.faults.harness import Deployment
from tests.faults.scenarios import sigkill


def test_job_killed_twice_mid_run_succeeds_once_with_the_uninterrupted_result(
    deployment: Deployment,
) -> None:
    work_root = Path(deployment.env["ADAPRUNE_HOME"]) / "work"
    before = _entries(work_root)
    figures = sigkill(deployment, kills=2, kills_per_job=2, seed=1)

    assert figures.problems == []
    assert figures.values["kills"] == 2
    assert (figures.lost, figures.run_twice) == (0, 0)
    assert figures.values["mismatched_metrics"] == 0
    assert figures.values["mismatched_weights"] == 0
    # each killed attempt's directory was removed by the attempt that claimed the job next
    assert _entries(work_root) - before == set()


def _entries(work_root: Path) -> set[str]:
    return {p.name for p in work_root.iterdir()} if work_root.is_dir() else set()
