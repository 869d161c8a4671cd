from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret-1",
    "GRAFANA_DB_PASSWORD": "grafana-db-secret-2",
    "REDIS_PASSWORD": "redis-secret-3",
    "MINIO_ROOT_PASSWORD": "minio-secret-4",
    "GRAFANA_ADMIN_PASSWORD": "grafana-admin-secret-5",
}


def compose_config(
    compose: list[str], root: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root), **env}
    return subprocess.run(
        [*compose, "-f", str(root / "deploy" / "compose.yaml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def config(compose: list[str], root: Path) -> dict[str, Any]:
    result = compose_config(compose, root, SECRETS)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_compose_defines_the_whole_stack(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "api",
        "worker",
        "migrate",
        "redis",
        "postgres",
        "minio",
        "createbucket",
        "prometheus",
        "grafana",
    }


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_compose_refuses_to_start_without_each_secret(
    compose: list[str], root: Path, missing: str
) -> None:
    env = {name: value for name, value in SECRETS.items() if name != missing}
    result = compose_config(compose, root, env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr


def test_secrets_come_only_from_the_environment(config: dict[str, Any], root: Path) -> None:
    text = (root / "deploy" / "compose.yaml").read_text()
    for name in SECRETS:
        assert f"${{{name}:?set {name}}}" in text
        assert f"${{{name}:-" not in text
    rendered = json.dumps(config)
    assert "postgresql+psycopg://adaprune:pg-secret-1@postgres:5432/adaprune" in rendered


def test_workers_scale_without_fixed_names_or_host_ports(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"] == ["worker", "--queue", "gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["build"]["target"] == "worker"
    assert worker["environment"]["ADAPRUNE_METRICS_PORT"] == "9100"


def test_api_waits_for_migrations_and_healthy_backends(config: dict[str, Any]) -> None:
    services = config["services"]
    depends = services["api"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["createbucket"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker", "redis", "postgres", "minio", "prometheus", "grafana"):
        assert services[name]["healthcheck"]["test"], name


def test_services_share_the_contract_environment(config: dict[str, Any]) -> None:
    for name in ("api", "worker", "migrate"):
        env = config["services"][name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["REDIS_URL"] == "redis://:redis-secret-3@redis:6379/0"
        assert env["ARTIFACT_URL"].startswith("s3://adaprune/")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AWS_SECRET_ACCESS_KEY"] == "minio-secret-4"


def test_redis_persists_with_append_only_file(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume["target"] == "/data" for volume in redis["volumes"])


def test_prometheus_and_grafana_mount_the_shipped_config(
    config: dict[str, Any], root: Path
) -> None:
    services = config["services"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), volume["source"]
                assert Path(volume["source"]).is_relative_to(root / "deploy")
