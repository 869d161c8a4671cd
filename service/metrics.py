"""The API's Prometheus metrics (names are part of the service contract)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from core.contract.states import JOB_STATES

log = logging.getLogger(__name__)


class ScrapeSources:
    """Callables the scrape-time gauges read; each may raise when its backend is down."""

    def __init__(
        self,
        *,
        state_counts: Callable[[], dict[str, int]],
        queue_depths: Callable[[], dict[str, int]],
        max_heartbeat_age_s: Callable[[], float],
    ) -> None:
        self.state_counts = state_counts
        self.queue_depths = queue_depths
        self.max_heartbeat_age_s = max_heartbeat_age_s


class StoreCollector(Collector):
    """Gauges read from the database and Redis at scrape time; a backend that is down leaves
    its family out of the scrape instead of failing it."""

    def __init__(self, sources: ScrapeSources) -> None:
        self.sources = sources

    def collect(self) -> Iterable[Metric]:
        try:
            counts = self.sources.state_counts()
            jobs = GaugeMetricFamily("adaprune_jobs", "Jobs by state", labels=["state"])
            for state in JOB_STATES:
                jobs.add_metric([state], counts.get(state, 0))
            yield jobs
            yield GaugeMetricFamily(
                "adaprune_running_job_max_heartbeat_age_seconds",
                "Age of the oldest heartbeat among running jobs (0 if none)",
                value=self.sources.max_heartbeat_age_s(),
            )
        except Exception as error:  # a scrape must not fail because the database is down
            log.warning("database gauges skipped: %s", type(error).__name__)
        try:
            depths = self.sources.queue_depths()
            family = GaugeMetricFamily(
                "adaprune_queue_depth", "Messages waiting per queue", labels=["queue"]
            )
            for queue, depth in sorted(depths.items()):
                family.add_metric([queue], depth)
            yield family
        except Exception as error:  # likewise for Redis
            log.warning("queue depth skipped: %s", type(error).__name__)


class ApiMetrics:
    """The API's metrics, in a registry of their own (one per app)."""

    def __init__(self, sources: ScrapeSources | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "adaprune_http_requests_total",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "adaprune_http_request_duration_seconds",
            "HTTP request duration by route template and method",
            ["route", "method"],
            registry=self.registry,
        )
        self.submitted = Counter(
            "adaprune_jobs_submitted_total", "Jobs accepted by the API", registry=self.registry
        )
        if sources is not None:
            self.registry.register(StoreCollector(sources))
