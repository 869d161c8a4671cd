"""One real deployment for the monitoring tests: API and worker processes on a fresh PostgreSQL
database, one tiny job run to success through the API, and Prometheus scraping both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, deployment, tiny_spec
from tests.support.prometheus import Prometheus, prometheus_server, require_prometheus

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def running_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("deployment")) as service:
        yield service


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    return require_prometheus()


@pytest.fixture(scope="session")
def prometheus(
    prometheus_binary: str,
    running_deployment: Deployment,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Prometheus]:
    """Prometheus scraping the deployment every second, with the shipped alert rules."""
    targets = {
        "adaprune-api": f"127.0.0.1:{running_deployment.api_port}",
        "adaprune-worker": f"127.0.0.1:{running_deployment.worker_metrics_port}",
    }
    folder = tmp_path_factory.mktemp("prometheus")
    with prometheus_server(folder, binary=prometheus_binary, targets=targets) as server:
        yield server


@pytest.fixture(scope="session")
def finished_job(running_deployment: Deployment) -> dict[str, Any]:
    """The tiny job, run through the API by the worker until it succeeded."""
    job = running_deployment.run_job(tiny_spec())
    assert job["state"] == "succeeded", f"{job}\n{running_deployment.logs()}"
    return job
