"""API latency: job submission under 50 concurrent clients, and submit -> worker start.

Runs a real deployment (uvicorn subprocess, real Redis, SQLite or PostgreSQL, real worker
processes) and writes the "api" section of docs/benchmarks.md.

    python -m bench.api_load [--backend sqlite|postgresql] [--requests 1000] [--jobs 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import write_section
from bench.live import FINAL, Deployment, deployment, percentile, tiny_job

CLIENTS = 50


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Burst:
    """Latencies (seconds) and status counts of one submission run."""

    latencies: list[float]
    statuses: dict[int, int]
    wall_s: float
    ids: list[str]
    server_cpu_s: float = 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / len(self.latencies)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall_s

    def ms(self, q: float) -> float:
        return 1000 * percentile(self.latencies, q)


async def submit_burst(
    *,
    url: str,
    keys: list[str],
    requests: int,
    clients: int = CLIENTS,
    rate_per_client: float | None = None,
    server_pid: int | None = None,
) -> Burst:
    """Submit `requests` tiny jobs from `clients` concurrent clients; request n uses keys[n % k].

    Args:
        url: the API's base URL.
        keys: API keys, used round robin by request number.
        requests: how many submissions in all.
        clients: concurrent clients (one connection each).
        rate_per_client: None: each client sends its next request as soon as the previous one
            is answered (closed loop, saturation); else each client sends on a Poisson clock
            at this mean rate (requests/s), so the offered load does not depend on latency.
        server_pid: the API process, whose CPU time over the run is recorded.

    Returns:
        Every request's latency, the count of each status, the wall time and the accepted ids.
    """
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[str] = []
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client_loop(index: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(index)
        next_at = time.perf_counter()
        for n in counter:
            if rate_per_client is not None:
                next_at += rng.expovariate(rate_per_client)
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            started = time.perf_counter()
            # the request number picks the key, so each tenant gets an exact share of the burst
            headers = {"Authorization": f"Bearer {keys[n % len(keys)]}"}
            response = await http.post(
                f"{url}/v1/jobs", json=tiny_job(name=f"load-{n}"), headers=headers
            )
            latencies.append(time.perf_counter() - started)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code == 201:
                ids.append(str(response.json()["id"]))

    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client_loop(i, http) for i in range(clients)))
        wall = time.perf_counter() - began
    cpu = cpu_seconds(server_pid) - cpu_before if server_pid else 0.0
    return Burst(latencies=latencies, statuses=statuses, wall_s=wall, ids=ids, server_cpu_s=cpu)


def submit_to_start(deploy: Deployment, *, key: str, jobs: int) -> tuple[list[float], list[float]]:
    """Submit `jobs` tiny jobs one at a time to an idle worker, each after the last one ended.

    Returns:
        (seconds from the client's submit to the job's started_at, seconds from submit to the
        first job_steps row), one value per job.
    """
    to_start: list[float] = []
    to_step: list[float] = []
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=deploy.url, headers=headers, timeout=30) as http:
        for n in range(jobs):
            time.sleep(0.5)  # the worker is idle, blocked on the broker, when the job arrives
            sent_at = datetime.now().astimezone()
            response = http.post("/v1/jobs", json=tiny_job(name=f"start-{n}"))
            response.raise_for_status()
            job_id = str(response.json()["id"])
            deadline = time.monotonic() + 120
            while True:
                job = deploy.store.load_job(job_id)
                if job is not None and job.state in FINAL:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} did not finish in 120 s")
                time.sleep(0.05)
            if job.state != "succeeded" or job.started_at is None:
                raise RuntimeError(f"job {job_id} ended {job.state}: {job.error_message}")
            steps = deploy.store.list_steps(job_id)
            to_start.append((job.started_at - sent_at).total_seconds())
            if steps:
                to_step.append((min(s.created_at for s in steps) - sent_at).total_seconds())
    return to_start, to_step


def _burst_row(label: str, burst: Burst) -> str:
    codes = ", ".join(f"{code}: {count}" for code, count in sorted(burst.statuses.items()))
    return (
        f"| {label} | {len(burst.latencies)} | {burst.rate:.0f} | {burst.ms(50):.1f} | "
        f"{burst.ms(99):.1f} | {1000 * max(burst.latencies):.1f} | "
        f"{burst.cpu_ms_per_request:.2f} | {codes} |"
    )


def run(*, backend: str, requests: int, jobs: int, paced_rate: float) -> dict[str, Any]:
    """Measure everything on one fresh deployment; returns the figures."""
    with (
        tempfile.TemporaryDirectory(prefix="adaprune-api-load-") as tmp,
        deployment(Path(tmp), backend=backend) as deploy,
    ):
        keys = [deploy.key(f"tenant-{i}", max_active=10**6) for i in range(5)]
        deploy.start_api()
        asyncio.run(submit_burst(url=deploy.url, keys=keys, requests=100))  # warm-up
        pid = deploy.processes[0].pid
        saturated = asyncio.run(
            submit_burst(url=deploy.url, keys=keys, requests=requests, server_pid=pid)
        )
        paced = asyncio.run(
            submit_burst(
                url=deploy.url,
                keys=keys,
                requests=requests,
                rate_per_client=paced_rate / CLIENTS,
                server_pid=pid,
            )
        )
        deploy.discard_queued()
        deploy.start_worker()
        to_start, to_step = submit_to_start(deploy, key=keys[0], jobs=jobs)
    return {
        "saturated": saturated,
        "paced": paced,
        "paced_rate": paced_rate,
        "to_start": to_start,
        "to_step": to_step,
    }


def render(figures: dict[str, Any], *, backend: str) -> str:
    """The markdown of the "api" section."""
    to_start = figures["to_start"]
    to_step = figures["to_step"]
    paced: Burst = figures["paced"]
    store = "SQLite (WAL, one file)" if backend == "sqlite" else "PostgreSQL 127.0.0.1"
    lines = [
        "## API: submission latency and time to start",
        "",
        f"One `adaprune api` process (uvicorn), {store}, real Redis on 127.0.0.1. The client "
        f"(httpx, asyncio, {CLIENTS} concurrent connections) runs on the same machine and takes "
        "CPU from the server. Every POST validates the spec, authenticates the key (sha256 "
        "lookup), inserts the job (quota check in the same transaction) and publishes its id "
        "to the broker.",
        "",
        "| load | requests | requests/s | p50 ms | p99 ms | max ms | server CPU ms/request "
        "| statuses |",
        "|---|---|---|---|---|---|---|---|",
        _burst_row(f"{CLIENTS} clients, closed loop (saturation)", figures["saturated"]),
        _burst_row(
            f"{CLIENTS} clients, Poisson arrivals, {figures['paced_rate']:.0f} req/s offered",
            paced,
        ),
        "",
        f"Target POST p99 < 50 ms at the paced load: **{paced.ms(99):.1f} ms** "
        f"({'met' if paced.ms(99) < 50 else 'missed'}). In the closed loop the latency is "
        "queueing: 50 requests always in flight divided by the throughput.",
        "",
        f"Submit to start, one idle `adaprune worker` process, {len(to_start)} tiny jobs "
        "submitted one at a time (each after the previous one ended and the worker idled "
        "0.5 s); measured from the client's send time to the job's `started_at` (the lease "
        "claim) and to its first `job_steps` row:",
        "",
        "| interval | p50 s | p95 s | max s |",
        "|---|---|---|---|",
        f"| submit -> started_at | {percentile(to_start, 50):.3f} | "
        f"{percentile(to_start, 95):.3f} | {max(to_start):.3f} |",
    ]
    if to_step:
        lines.append(
            f"| submit -> first step row | {percentile(to_step, 50):.3f} | "
            f"{percentile(to_step, 95):.3f} | {max(to_step):.3f} |"
        )
    lines += [
        "",
        f"Target submit-to-start p95 < 1 s: **{percentile(to_start, 95):.3f} s** "
        f"({'met' if percentile(to_start, 95) < 1 else 'missed'}). The first step row comes "
        "after the dense baseline, pre-training (1 epoch) and the one pruning step, so it also "
        "holds the first job's torch import.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--paced-rate", type=float, default=50.0, help="offered requests/s")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    args = parser.parse_args()
    figures = run(
        backend=args.backend, requests=args.requests, jobs=args.jobs, paced_rate=args.paced_rate
    )
    text = render(figures, backend=args.backend)
    print(text)
    print("median submit->start", statistics.median(figures["to_start"]))
    if not args.no_write:
        write_section("api", text)


if __name__ == "__main__":
    main()
