"""Jobs that diverge or run out of time end in a state that says so."""

from __future__ import annotations

from tests.faults.harness import Deployment
from tests.faults.scenarios import diverged, max_runtime


def test_diverging_fine_tuning_fails_as_training_diverged_and_keeps_its_checkpoint(
    deployment: Deployment,
) -> None:
    figures = diverged(deployment)

    assert figures.problems == []
    assert figures.values["latest_checkpoint"] == "step-0001"
    assert figures.values["steps"] == [0, 1]
    assert "nan" in figures.values["error_message"]


def test_job_past_max_runtime_stops_saves_and_says_so(deployment: Deployment) -> None:
    figures = max_runtime(deployment)

    assert figures.problems == []
    assert (figures.values["state"], figures.values["stop_reason"]) == ("succeeded", "max_runtime")
    assert figures.values["sparsity"] < 0.6
