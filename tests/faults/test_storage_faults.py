"""Artifact storage that fails: no partial artifact set is ever listed."""

from __future__ import annotations

from tests.faults.harness import Deployment
from tests.faults.scenarios import storage_partial_upload, storage_unreachable


def test_unreachable_storage_fails_the_job_clearly_and_lists_no_artifact(
    deployment: Deployment,
) -> None:
    figures = storage_unreachable(deployment)

    assert figures.problems == []
    assert figures.values["error_code"] == "storage_unavailable"
    assert "Not a directory" in figures.values["error_message"]
    assert figures.values["attempts"] == 3


def test_upload_failing_after_some_files_never_lists_a_partial_set(
    deployment: Deployment,
) -> None:
    figures = storage_partial_upload(deployment)

    assert figures.problems == []
    assert figures.values["failed_uploads"] >= 1
    assert (figures.lost, figures.run_twice) == (0, 0)
