"""Every metric name that the alerts, dashboards and autoscaling use exists in the live /metrics
output of the API and of a worker that has run a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.metric_names import CONTRACT_METRICS, names_used_in_deploy
from tests.support.deployment import Deployment

pytestmark = pytest.mark.integration


def exposed_names(text: str) -> set[str]:
    """Family names and sample names of an exposition: a counter family `x` gives `x` and
    `x_total`, a histogram `h` gives `h`, `h_bucket`, `h_sum` and `h_count`."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def live_names(running_deployment: Deployment, finished_job: dict[str, Any]) -> set[str]:
    api = httpx.get(f"{running_deployment.api_url}/metrics", timeout=5).raise_for_status()
    worker = httpx.get(running_deployment.worker_metrics_url, timeout=5).raise_for_status()
    return exposed_names(api.text) | exposed_names(worker.text)


def test_exposed_names_cover_counter_and_histogram_series() -> None:
    text = (
        "# TYPE adaprune_steps counter\nadaprune_steps_total 3.0\n"
        '# TYPE adaprune_h histogram\nadaprune_h_bucket{le="+Inf"} 1.0\n'
        "adaprune_h_count 1.0\nadaprune_h_sum 0.5\n"
    )
    assert exposed_names(text) == {
        "adaprune_steps",
        "adaprune_steps_total",
        "adaprune_h",
        "adaprune_h_bucket",
        "adaprune_h_count",
        "adaprune_h_sum",
    }


def test_every_metric_used_in_deploy_is_exposed_live(root: Path, live_names: set[str]) -> None:
    used = names_used_in_deploy(root)
    assert used, "the deploy tree uses no adaprune metric"
    assert sorted(used - live_names) == []


def test_every_contract_metric_is_exposed_live(live_names: set[str]) -> None:
    assert sorted(CONTRACT_METRICS - live_names) == []
