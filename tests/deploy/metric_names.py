"""Which Prometheus metrics and SQL queries the deploy tree uses.

The lead's live test compares `names_used_in_deploy` with a real /metrics output; the tests here
compare it with the service contract's list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

CONTRACT_METRICS = frozenset(
    {
        "adaprune_http_requests_total",
        "adaprune_http_request_duration_seconds",
        "adaprune_jobs_submitted_total",
        "adaprune_jobs",
        "adaprune_queue_depth",
        "adaprune_running_job_max_heartbeat_age_seconds",
        "adaprune_job_duration_seconds",
        "adaprune_job_queue_wait_seconds",
        "adaprune_jobs_finished_total",
        "adaprune_job_retries_total",
        "adaprune_step_duration_seconds",
        "adaprune_steps_total",
        "adaprune_worker_busy",
        "adaprune_worker_job_sparsity",
        "adaprune_worker_job_metric",
        "adaprune_worker_heartbeat_age_seconds",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

_METRIC = re.compile(r"\badaprune_\w+")


def metric_name(token: str) -> str:
    """Strip a histogram series suffix: adaprune_x_seconds_bucket -> adaprune_x_seconds."""
    for suffix in HISTOGRAM_SUFFIXES:
        if token.endswith(suffix):
            return token[: -len(suffix)]
    return token


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def dashboards(root: Path) -> dict[str, dict[str, Any]]:
    """Load every dashboard JSON under deploy/grafana/dashboards, keyed by file name."""
    folder = root / "deploy" / "grafana" / "dashboards"
    return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def promql_expressions(root: Path) -> list[str]:
    """Every PromQL expression in the deploy tree.

    Args:
        root: the repository root.

    Returns:
        alert rule `expr`s, dashboard target `expr`s and KEDA prometheus trigger queries.
    """
    expressions: list[str] = []
    alerts = yaml.safe_load((root / "deploy" / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        expressions.extend(str(rule["expr"]) for rule in group["rules"])
    for dashboard in dashboards(root).values():
        expressions.extend(
            str(node["expr"]) for node in _walk(dashboard) if isinstance(node.get("expr"), str)
        )
    for path in sorted((root / "deploy" / "k8s").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for node in _walk(document):
                if node.get("type") == "prometheus" and isinstance(node.get("metadata"), dict):
                    expressions.append(str(node["metadata"]["query"]))
    return expressions


def names_used_in_deploy(root: Path) -> set[str]:
    """Metric names (histogram suffixes stripped) used by alerts, dashboards and autoscaling.

    Args:
        root: the repository root.

    Returns:
        names such as {"adaprune_queue_depth", "adaprune_job_duration_seconds", ...}.
    """
    return {
        metric_name(token)
        for expression in promql_expressions(root)
        for token in _METRIC.findall(expression)
    }


def sql_queries_in_dashboards(root: Path) -> list[str]:
    """Raw SQL of every PostgreSQL panel target and template variable, Grafana macros intact.

    Args:
        root: the repository root.

    Returns:
        the queries, in dashboard file and panel order.
    """
    queries: list[str] = []
    for dashboard in dashboards(root).values():
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("datasource", {}).get("uid") == "adaprune-postgres":
                queries.append(str(variable["query"]))
        for node in _walk(dashboard.get("panels", [])):
            if isinstance(node.get("rawSql"), str):
                queries.append(node["rawSql"])
    return queries
