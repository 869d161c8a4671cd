"""deploy/worker_probe.py against a real prometheus_client endpoint and a real child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from tests.support.processes import free_port


@dataclass
class WorkerMetrics:
    port: int
    busy: Gauge
    heartbeat_age: Gauge
    steps: Counter


@pytest.fixture
def metrics() -> Iterator[WorkerMetrics]:
    registry = CollectorRegistry()
    worker = WorkerMetrics(
        port=free_port(),
        busy=Gauge("adaprune_worker_busy", "busy", registry=registry),
        heartbeat_age=Gauge("adaprune_worker_heartbeat_age_seconds", "age", registry=registry),
        steps=Counter("adaprune_steps", "steps", registry=registry),
    )
    server, _thread = start_http_server(worker.port, addr="127.0.0.1", registry=registry)
    yield worker
    server.shutdown()


def probe(root: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ADAPRUNE_METRICS_PORT": str(port), "ADAPRUNE_HEARTBEAT_S": "10"}
    return subprocess.run(
        [sys.executable, str(root / "deploy" / "worker_probe.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )


def test_idle_worker_is_healthy(root: Path, metrics: WorkerMetrics) -> None:
    metrics.busy.set(0)
    assert probe(root, metrics.port, "health").returncode == 0


def test_busy_worker_with_fresh_heartbeat_is_healthy(root: Path, metrics: WorkerMetrics) -> None:
    metrics.busy.set(1)
    metrics.heartbeat_age.set(12)
    assert probe(root, metrics.port, "health").returncode == 0


def test_busy_worker_with_heartbeat_older_than_three_intervals_is_unhealthy(
    root: Path, metrics: WorkerMetrics
) -> None:
    metrics.busy.set(1)
    metrics.heartbeat_age.set(31)
    result = probe(root, metrics.port, "health")
    assert result.returncode == 1
    assert "stale heartbeat" in result.stderr


def test_worker_without_metrics_endpoint_is_unhealthy(root: Path) -> None:
    result = probe(root, free_port(), "health")
    assert result.returncode == 1
    assert "did not answer" in result.stderr


SIGNAL_RECORDER = """
import signal, sys, time
path = sys.argv[1]
def record(signum, frame):
    with open(path, "a") as out:
        out.write(signal.Signals(signum).name + "\\n")
signal.signal(signal.SIGTERM, record)
signal.signal(signal.SIGQUIT, record)
open(path, "a").close()
time.sleep(30)
"""


@pytest.fixture
def fake_worker_process(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    log = tmp_path / "signals.log"
    child = subprocess.Popen([sys.executable, "-c", SIGNAL_RECORDER, str(log)])
    deadline = time.monotonic() + 10
    while not log.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield child.pid, log
    child.kill()
    child.wait()


def test_drain_of_an_idle_worker_only_starts_warm_shutdown(
    root: Path, metrics: WorkerMetrics, fake_worker_process: tuple[int, Path]
) -> None:
    pid, log = fake_worker_process
    metrics.busy.set(0)
    result = probe(root, metrics.port, "drain", "--pid", str(pid), "--timeout", "5")
    assert result.stdout.strip() == "drain: idle"
    time.sleep(0.2)
    assert log.read_text().split() == ["SIGTERM"]


def test_drain_of_a_busy_worker_stops_it_after_the_next_step(
    root: Path, metrics: WorkerMetrics, fake_worker_process: tuple[int, Path]
) -> None:
    pid, log = fake_worker_process
    metrics.busy.set(1)
    metrics.steps.inc(4)
    finish_step = threading.Timer(1.5, metrics.steps.inc)
    finish_step.start()
    started = time.monotonic()
    result = probe(root, metrics.port, "drain", "--pid", str(pid), "--timeout", "20")
    finish_step.join()
    assert result.stdout.strip() == "drain: step"
    assert time.monotonic() - started >= 1.5
    time.sleep(0.2)
    assert log.read_text().split() == ["SIGTERM", "SIGQUIT"]


def test_drain_gives_up_at_its_timeout_without_cold_shutdown(
    root: Path, metrics: WorkerMetrics, fake_worker_process: tuple[int, Path]
) -> None:
    pid, log = fake_worker_process
    metrics.busy.set(1)
    result = probe(root, metrics.port, "drain", "--pid", str(pid), "--timeout", "2")
    assert result.stdout.strip() == "drain: timeout"
    assert log.read_text().split() == [signal.Signals.SIGTERM.name]
