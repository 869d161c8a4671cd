from __future__ import annotations

import json
from pathlib import Path

from tests.deploy.metric_names import (
    CONTRACT_METRICS,
    dashboards,
    metric_name,
    names_used_in_deploy,
    promql_expressions,
    sql_queries_in_dashboards,
)


def test_alerts_dashboards_and_autoscaling_use_only_contract_metrics(root: Path) -> None:
    used = names_used_in_deploy(root)
    assert used, "no adaprune_ metric found in the deploy tree"
    assert used <= CONTRACT_METRICS, sorted(used - CONTRACT_METRICS)


def test_the_service_dashboard_shows_every_contract_metric(root: Path) -> None:
    service = dashboards(root)["adaprune-service.json"]
    text = json.dumps(service)
    missing = {name for name in CONTRACT_METRICS if name not in text}
    assert not missing, sorted(missing)


def test_histogram_suffixes_are_stripped() -> None:
    assert metric_name("adaprune_step_duration_seconds_bucket") == "adaprune_step_duration_seconds"
    assert metric_name("adaprune_job_duration_seconds_count") == "adaprune_job_duration_seconds"
    assert metric_name("adaprune_steps_total") == "adaprune_steps_total"


def test_quantile_panels_read_histogram_buckets(root: Path) -> None:
    quantiles = [e for e in promql_expressions(root) if "histogram_quantile" in e]
    assert len(quantiles) >= 6
    for expression in quantiles:
        assert "_bucket" in expression and "by (le" in expression, expression


def test_a_misspelt_metric_in_an_alert_is_reported(root: Path, tmp_path: Path) -> None:
    for relative in ("deploy/prometheus", "deploy/grafana/dashboards", "deploy/k8s"):
        (tmp_path / relative).mkdir(parents=True)
    source = (root / "deploy/prometheus/alerts.yml").read_text()
    (tmp_path / "deploy/prometheus/alerts.yml").write_text(
        source.replace("adaprune_worker_busy", "adaprune_worker_busy_flag")
    )
    used = names_used_in_deploy(tmp_path)
    assert used - CONTRACT_METRICS == {"adaprune_worker_busy_flag"}


def test_dashboard_sql_is_collected_from_panels_and_the_job_variable(root: Path) -> None:
    queries = sql_queries_in_dashboards(root)
    assert any("__value" in query for query in queries)
    assert sum("job_steps" in query for query in queries) >= 3
    assert all(query.lstrip().upper().startswith("SELECT") for query in queries)


def test_dashboards_use_the_provisioned_datasource_uids(root: Path) -> None:
    allowed = {
        "adaprune-service.json": {"adaprune-prometheus"},
        "adaprune-jobs.json": {"adaprune-postgres"},
    }
    for name, dashboard in dashboards(root).items():
        uids = set()
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            uids.add(panel["datasource"]["uid"])
            uids.update(target["datasource"]["uid"] for target in panel["targets"])
        assert uids == allowed[name], name
