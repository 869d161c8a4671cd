"""Prometheus metrics of one worker process, served on ADAPRUNE_METRICS_PORT.

Each worker process runs one job at a time (solo pool, no forked children), so the metrics live
in the process's own registry and no prometheus multiprocess directory is needed: one process is
one worker slot and one scrape target. Gauges describe that slot, never a job id.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from core.contract.states import FINAL_STATES

OUTCOMES = FINAL_STATES
_JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 604800)
_WAIT_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600, 14400, 86400)
_STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)


class WorkerMetrics:
    """The worker metrics of the service contract, in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.job_duration = Histogram(
            "adaprune_job_duration_seconds",
            "Wall time of a job attempt on this worker, by outcome.",
            ["outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "adaprune_job_queue_wait_seconds",
            "Time from submission to the first start of a job.",
            buckets=_WAIT_BUCKETS,
            registry=r,
        )
        self.jobs_finished = Counter(
            "adaprune_jobs_finished",
            "Jobs this worker finished, by outcome.",
            ["outcome"],
            registry=r,
        )
        self.retries = Counter(
            "adaprune_job_retries",
            "Jobs taken over or resumed on an attempt after the first.",
            registry=r,
        )
        self.step_duration = Histogram(
            "adaprune_step_duration_seconds",
            "Wall time of one pruning step.",
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self.steps = Counter("adaprune_steps", "Pruning steps this worker ran.", registry=r)
        self.busy = Gauge("adaprune_worker_busy", "1 while this worker runs a job.", registry=r)
        self.sparsity = Gauge(
            "adaprune_worker_job_sparsity", "Sparsity of the current job (0 when idle).", registry=r
        )
        self.metric = Gauge(
            "adaprune_worker_job_metric",
            "Last validation metric of the current job (0 when idle).",
            registry=r,
        )
        self.heartbeat_age = Gauge(
            "adaprune_worker_heartbeat_age_seconds",
            "Seconds since this worker's last successful heartbeat (0 when idle).",
            registry=r,
        )
        self._lock = threading.Lock()
        self._last_heartbeat: float | None = None
        self.heartbeat_age.set_function(self._heartbeat_age)
        for outcome in OUTCOMES:
            self.jobs_finished.labels(outcome=outcome)
            self.job_duration.labels(outcome=outcome)

    def _heartbeat_age(self) -> float:
        with self._lock:
            last = self._last_heartbeat
        return 0.0 if last is None else max(0.0, time.monotonic() - last)

    def job_started(self) -> None:
        """Mark the slot busy; the heartbeat age counts from now."""
        self.busy.set(1)
        self.sparsity.set(0)
        self.metric.set(0)
        self.heartbeat_beat()

    def heartbeat_beat(self) -> None:
        """Record a successful heartbeat."""
        with self._lock:
            self._last_heartbeat = time.monotonic()

    def step(self, *, seconds: float, sparsity: float, metric: float) -> None:
        """Record one pruning step of the current job."""
        self.steps.inc()
        self.step_duration.observe(max(0.0, seconds))
        self.sparsity.set(sparsity)
        self.metric.set(metric)

    def job_ended(self, *, outcome: str | None, seconds: float) -> None:
        """Mark the slot idle; count the outcome when this worker wrote one (None: lease lost)."""
        if outcome is not None:
            if outcome not in OUTCOMES:
                raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
            self.jobs_finished.labels(outcome=outcome).inc()
            self.job_duration.labels(outcome=outcome).observe(max(0.0, seconds))
        with self._lock:
            self._last_heartbeat = None
        self.busy.set(0)
        self.sparsity.set(0)
        self.metric.set(0)

    def serve(self, port: int, *, host: str = "0.0.0.0") -> int | None:
        """Serve /metrics on `host`:`port` (port 0: do not serve). Returns the port, or None."""
        if port == 0:
            return None
        start_http_server(port, addr=host, registry=self.registry)
        return port
