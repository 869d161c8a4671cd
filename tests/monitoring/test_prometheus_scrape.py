"""A real Prometheus, configured from the shipped prometheus.yml, scrapes the running API and
worker while a job runs through the API, and reads the job's metrics back."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.deployment import Deployment
from tests.support.processes import wait_until
from tests.support.prometheus import SHIPPED_DIR, Prometheus, local_config

pytestmark = pytest.mark.integration


def shipped_config(name: str) -> Any:
    return yaml.safe_load((SHIPPED_DIR / name).read_text())


def test_local_config_keeps_the_shipped_jobs_paths_and_rule_files() -> None:
    shipped = shipped_config("prometheus.yml")
    jobs = [job["job_name"] for job in shipped["scrape_configs"]]
    targets = {name: f"127.0.0.1:{9000 + i}" for i, name in enumerate(jobs)}
    config = local_config(shipped, targets=targets)
    assert [(job["job_name"], job["metrics_path"]) for job in config["scrape_configs"]] == [
        (job["job_name"], job["metrics_path"]) for job in shipped["scrape_configs"]
    ]
    assert [job["static_configs"] for job in config["scrape_configs"]] == [
        [{"targets": [targets[name]]}] for name in jobs
    ]
    assert not any("dns_sd_configs" in job for job in config["scrape_configs"])
    assert config["rule_files"] == [str(SHIPPED_DIR / name) for name in shipped["rule_files"]]
    with pytest.raises(ValueError, match="do not match the shipped jobs"):
        local_config(shipped, targets={jobs[0]: "127.0.0.1:1"})


def test_both_shipped_jobs_are_up(prometheus: Prometheus, running_deployment: Deployment) -> None:
    for job in ("adaprune-api", "adaprune-worker"):
        assert prometheus.wait_for_value(f'up{{job="{job}"}} == 1') == 1, running_deployment.logs()


def test_prometheus_reads_back_the_metrics_of_a_job_run_through_the_api(
    prometheus: Prometheus, running_deployment: Deployment, finished_job: dict[str, Any]
) -> None:
    with running_deployment.client() as client:
        steps = client.get(f"/v1/jobs/{finished_job['id']}/steps").raise_for_status().json()
    assert len(steps) >= 1
    worker = 'job="adaprune-worker"'
    api = 'job="adaprune-api"'
    post = 'route="/v1/jobs",method="POST",status="201"'
    # Each query filters, so its series appears only once a scrape after the job shows it.
    expected = {
        f'adaprune_jobs_finished_total{{{worker},outcome="succeeded"}} >= 1': 1,
        f"adaprune_steps_total{{{worker}}} > 0": len(steps),
        f'adaprune_job_duration_seconds_count{{{worker},outcome="succeeded"}} >= 1': 1,
        f"adaprune_job_queue_wait_seconds_count{{{worker}}} >= 1": 1,
        f"adaprune_step_duration_seconds_count{{{worker}}} > 0": len(steps),
        f"adaprune_worker_busy{{{worker}}} == 0": 0,
        f"adaprune_jobs_submitted_total{{{api}}} >= 1": 1,
        f"adaprune_http_requests_total{{{api},{post}}} >= 1": 1,
        f'adaprune_jobs{{{api},state="succeeded"}} >= 1': 1,
    }
    observed = {query: prometheus.wait_for_value(query) for query in expected}
    assert observed == expected


def test_every_shipped_alert_rule_loads_and_evaluates_healthy(prometheus: Prometheus) -> None:
    shipped = shipped_config("alerts.yml")

    def evaluated() -> list[dict[str, Any]] | None:
        groups: list[dict[str, Any]] = prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return groups if rules and all(rule["health"] != "unknown" for rule in rules) else None

    groups = wait_until(evaluated, what="evaluated alert rules", timeout_s=20)
    assert {group["name"]: [rule["name"] for rule in group["rules"]] for group in groups} == {
        group["name"]: [rule["alert"] for rule in group["rules"]] for group in shipped["groups"]
    }
    unhealthy = [
        (rule["name"], rule["health"], rule.get("lastError"))
        for group in groups
        for rule in group["rules"]
        if rule["health"] != "ok"
    ]
    assert unhealthy == []
