"""A real Prometheus server for integration tests, configured from the shipped
deploy/prometheus/prometheus.yml with only the scrape targets and intervals changed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.processes import ROOT, free_port, http_text, running, unavailable, wait_until

SHIPPED_DIR = ROOT / "deploy" / "prometheus"
# Service discovery blocks of the shipped jobs; the test replaces them with static targets.
_DISCOVERY_KEYS = ("static_configs", "dns_sd_configs", "kubernetes_sd_configs", "file_sd_configs")


def local_config(
    shipped: Mapping[str, Any], *, targets: Mapping[str, str], interval: str = "1s"
) -> dict[str, Any]:
    """The shipped Prometheus config with each job's targets replaced by local ones.

    Job names, metrics paths and every other scrape option stay as shipped; rule files become
    absolute paths into deploy/prometheus/.

    Args:
        shipped: the parsed deploy/prometheus/prometheus.yml.
        targets: job name -> "host:port" of the local process serving that job.
        interval: scrape and rule evaluation interval.

    Returns:
        the config to write for the test server.

    Raises:
        ValueError: a shipped job has no local target, or a target names no shipped job.
    """
    jobs = [job["job_name"] for job in shipped["scrape_configs"]]
    if sorted(jobs) != sorted(targets):
        raise ValueError(f"targets {sorted(targets)} do not match the shipped jobs {sorted(jobs)}")
    scrape_configs = []
    for job in shipped["scrape_configs"]:
        local = {key: value for key, value in job.items() if key not in _DISCOVERY_KEYS}
        local["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
        local["scrape_interval"] = interval
        scrape_configs.append(local)
    return {
        **shipped,
        "global": {
            **shipped.get("global", {}),
            "scrape_interval": interval,
            "evaluation_interval": interval,
        },
        "rule_files": [str(SHIPPED_DIR / name) for name in shipped.get("rule_files", [])],
        "scrape_configs": scrape_configs,
    }


@dataclass
class Prometheus:
    """A running Prometheus server and its HTTP API."""

    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/`path`; returns its `data` after checking the status is success."""
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body.get("status") == "success", body
        return body["data"]

    def query(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """An instant query: (labels, value) of each series of the resulting vector."""
        data = self.api("query", query=promql)
        assert data["resultType"] == "vector", data
        return [(series["metric"], float(series["value"][1])) for series in data["result"]]

    def wait_for_value(self, promql: str, *, timeout_s: float = 30.0) -> float:
        """Poll `promql` until it yields exactly one series; returns its value.

        Use a filtering query (`x >= 1`) so that the series appears only once it holds.
        """

        def one() -> float | None:
            result = self.query(promql)
            return result[0][1] if len(result) == 1 else None

        return wait_until(one, what=f"series for {promql}", timeout_s=timeout_s)


def require_prometheus() -> str:
    """The path of the `prometheus` binary; skips (locally) or fails (CI) without it."""
    binary = shutil.which("prometheus")
    if binary is None:
        unavailable("the prometheus binary (apt-get install prometheus)")
    return binary


@contextmanager
def prometheus_server(
    root: Path, *, binary: str, targets: Mapping[str, str]
) -> Iterator[Prometheus]:
    """Start `prometheus` on a free port with the shipped config aimed at `targets`.

    Args:
        root: an empty directory for the config, the TSDB and the log.
        binary: the prometheus executable (see `require_prometheus`).
        targets: job name -> "host:port" (every shipped job needs one).

    Yields:
        the server, once /-/ready answers.
    """
    shipped = yaml.safe_load((SHIPPED_DIR / "prometheus.yml").read_text())
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config(shipped, targets=targets), sort_keys=False))
    port = free_port()
    log = root / "prometheus.log"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with running(argv, log=log) as process:
        url = f"http://127.0.0.1:{port}"
        wait_until(
            lambda: http_text(f"{url}/-/ready"),
            what="ready Prometheus",
            timeout_s=30,
            alive=[(process, log)],
        )
        yield Prometheus(url=url, log=log)
