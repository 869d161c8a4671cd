"""SIGKILL the worker that runs a job, twice: the job still ends once, like an uninterrupted run."""

from __future__ import annotations

from tests.faults.harness import Deployment
from tests.faults.scenarios import sigkill


def test_job_killed_twice_mid_run_succeeds_once_with_the_uninterrupted_result(
    deployment: Deployment,
) -> None:
    figures = sigkill(deployment, kills=2, kills_per_job=2, seed=1)

    assert figures.problems == []
    assert figures.values["kills"] == 2
    assert (figures.lost, figures.run_twice) == (0, 0)
    assert figures.values["mismatched_metrics"] == 0
    assert figures.values["mismatched_weights"] == 0
