from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from tests.support.processes import free_port

ALERTS = {
    "AdapruneWorkersDown",
    "AdapruneQueueBacklogGrowing",
    "AdapruneJobFailureRateHigh",
    "AdapruneJobsStuckRunning",
    "AdapruneHeartbeatStale",
    "AdapruneApi5xxRateHigh",
}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def test_prometheus_config_passes_promtool_check(promtool: str, root: Path) -> None:
    result = run([promtool, "check", "config", "prometheus.yml"], root / "deploy" / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_alert_rules_pass_promtool_check(promtool: str, root: Path) -> None:
    result = run([promtool, "check", "rules", "alerts.yml"], root / "deploy" / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass(promtool: str, root: Path) -> None:
    result = run([promtool, "test", "rules", "alerts_test.yml"], root / "deploy" / "prometheus")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_file_defines_exactly_the_required_alerts(root: Path) -> None:
    rules = yaml.safe_load((root / "deploy" / "prometheus" / "alerts.yml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert sorted(names) == sorted(ALERTS)


def test_every_alert_is_tested_firing_and_quiet(root: Path) -> None:
    suite = yaml.safe_load((root / "deploy" / "prometheus" / "alerts_test.yml").read_text())
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in suite["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == ALERTS
    assert quiet == ALERTS


def test_unit_tests_catch_a_broken_threshold(promtool: str, root: Path, tmp_path: Path) -> None:
    source = root / "deploy" / "prometheus"
    shutil.copy(source / "alerts_test.yml", tmp_path)
    broken = (source / "alerts.yml").read_text().replace("> 0.05", "> 0.9")
    (tmp_path / "alerts.yml").write_text(broken)
    result = run([promtool, "test", "rules", "alerts_test.yml"], tmp_path)
    assert result.returncode != 0
    assert "AdapruneApi5xxRateHigh" in result.stdout + result.stderr


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def api_and_worker_exporters() -> Iterator[tuple[int, int]]:
    api, worker = CollectorRegistry(), CollectorRegistry()
    Gauge("adaprune_queue_depth", "queue", ["queue"], registry=api).labels("gpu").set(0)
    Counter("adaprune_http_requests_total", "req", ["route", "method", "status"], registry=api)
    Gauge("adaprune_worker_busy", "busy", registry=worker).set(1)
    Histogram("adaprune_step_duration_seconds", "step", registry=worker).observe(2.0)
    ports = free_port(), free_port()
    servers = [
        start_http_server(ports[0], addr="127.0.0.1", registry=api),
        start_http_server(ports[1], addr="127.0.0.1", registry=worker),
    ]
    yield ports
    for server, _thread in servers:
        server.shutdown()


@pytest.mark.integration
def test_prometheus_scrapes_api_and_workers_and_loads_the_alerts(
    prometheus_server: str,
    root: Path,
    tmp_path: Path,
    api_and_worker_exporters: tuple[int, int],
) -> None:
    api_port, worker_port = api_and_worker_exporters
    config = yaml.safe_load((root / "deploy" / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["adaprune-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["adaprune-worker"]["dns_sd_configs"][0]["port"] == 9100
    # Compose service names do not resolve here: point both jobs at local exporters.
    jobs["adaprune-api"]["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    del jobs["adaprune-worker"]["dns_sd_configs"]
    jobs["adaprune-worker"]["static_configs"] = [{"targets": [f"127.0.0.1:{worker_port}"]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(root / "deploy" / "prometheus" / "alerts.yml", tmp_path)
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus_server,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        up: dict[str, str] = {}
        rule_health: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            time.sleep(1)
            try:
                targets = get_json(f"{base}/targets")["data"]["activeTargets"]
                groups = get_json(f"{base}/rules")["data"]["groups"]
            except OSError:
                continue
            up = {t["labels"]["job"]: t["health"] for t in targets}
            rule_health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
            if set(up.values()) == {"up"} and set(rule_health.values()) == {"ok"}:
                break
        assert up == {"adaprune-api": "up", "adaprune-worker": "up"}
        assert set(rule_health) == ALERTS
        assert set(rule_health.values()) == {"ok"}
        query = "adaprune_worker_busy"
        result = get_json(f"{base}/query?query={query}")["data"]["result"]
        assert result[0]["metric"]["job"] == "adaprune-worker"
    finally:
        process.terminate()
        process.wait(timeout=10)
