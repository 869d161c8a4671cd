#!/usr/bin/env python3
"""Health check and graceful drain for an adaprune worker container (standard library only).

Both modes read the worker's own Prometheus endpoint on 127.0.0.1:$ADAPRUNE_METRICS_PORT.

    worker_probe.py health
        Exit 0 when the endpoint answers and, while a job runs, the job heartbeat is younger
        than 3 x ADAPRUNE_HEARTBEAT_S (the service's stale-lease rule); exit 1 otherwise.

    worker_probe.py drain [--pid 1] [--timeout 540]
        Kubernetes preStop hook. Sends SIGTERM to the worker (it stops taking jobs and hands
        the running job back to the queue at its next checkpoint), then waits until the worker
        is idle or the running job finishes a step (adaprune_steps_total grows, so a fresh
        checkpoint exists). If a job is still running then, it sends SIGQUIT: the worker hands
        the job back at once, and another worker resumes it from that checkpoint.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})?\s+(?P<value>\S+)")


def read_metrics(*, port: int, timeout_s: float = 3.0) -> dict[str, float]:
    """Fetch the worker's /metrics and sum the samples of each metric name.

    Args:
        port: the worker's metrics port on 127.0.0.1.
        timeout_s: HTTP timeout in seconds.

    Returns:
        metric name -> sum of its samples (labels are ignored).
    """
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode("utf-8", errors="replace")
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            name = match["name"]
            values[name] = values.get(name, 0.0) + float(match["value"])
    return values


def is_healthy(metrics: dict[str, float], *, heartbeat_s: float) -> bool:
    """A worker is healthy unless it is busy with a heartbeat older than 3 intervals.

    Args:
        metrics: output of read_metrics.
        heartbeat_s: the configured heartbeat interval (ADAPRUNE_HEARTBEAT_S).

    Returns:
        True when idle, or busy with a fresh heartbeat.
    """
    if "adaprune_worker_busy" not in metrics:
        return False
    if metrics["adaprune_worker_busy"] < 1:
        return True
    return metrics.get("adaprune_worker_heartbeat_age_seconds", 0.0) <= 3 * heartbeat_s


def drain(*, pid: int, port: int, timeout_s: float, poll_s: float = 1.0) -> str:
    """Stop a worker at a step boundary; see the module docstring.

    Args:
        pid: the Celery worker's process id (1 in the container).
        port: the worker's metrics port.
        timeout_s: give up waiting after this many seconds (keep it below the pod's
            terminationGracePeriodSeconds so the kubelet's own SIGTERM still comes in time).
        poll_s: seconds between metric reads.

    Returns:
        "idle" (no job was running or it finished), "step" (cold shutdown after a step
        boundary) or "timeout".
    """
    try:
        steps_before = read_metrics(port=port).get("adaprune_steps_total", 0.0)
    except (OSError, ValueError):
        steps_before = None
    os.kill(pid, signal.SIGTERM)
    if steps_before is None:
        return "idle"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            metrics = read_metrics(port=port)
        except (OSError, ValueError):
            return "idle"
        if metrics.get("adaprune_worker_busy", 0.0) < 1:
            return "idle"
        if metrics.get("adaprune_steps_total", 0.0) > steps_before:
            os.kill(pid, signal.SIGQUIT)
            return "step"
        time.sleep(poll_s)
    return "timeout"


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("health", help="exit 0 if the worker is healthy")
    drain_parser = sub.add_parser("drain", help="preStop: stop at the next step boundary")
    drain_parser.add_argument("--pid", type=int, default=1)
    drain_parser.add_argument("--timeout", type=float, default=540.0)
    args = parser.parse_args(argv)
    port = int(os.environ.get("ADAPRUNE_METRICS_PORT", "9100"))
    if port <= 0:
        print("ADAPRUNE_METRICS_PORT is 0: the probe needs the metrics endpoint", file=sys.stderr)
        return 1
    if args.mode == "health":
        heartbeat_s = float(os.environ.get("ADAPRUNE_HEARTBEAT_S", "10"))
        try:
            metrics = read_metrics(port=port)
        except (OSError, ValueError, urllib.error.URLError) as error:
            print(f"metrics endpoint on port {port} did not answer: {error}", file=sys.stderr)
            return 1
        healthy = is_healthy(metrics, heartbeat_s=heartbeat_s)
        if not healthy:
            print("worker is busy with a stale heartbeat or exports no metrics", file=sys.stderr)
        return 0 if healthy else 1
    outcome = drain(pid=args.pid, port=port, timeout_s=args.timeout)
    print(f"drain: {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
