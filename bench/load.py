"""Prove it holds: a submission burst with quotas, one worker vs two, and the security runs.

    python -m bench.load              # "load" section of docs/reliability.md
    python -m bench.load --security   # "security" section: long fuzz run + hostile-input table

Load: 1,000 submissions from 50 concurrent clients spread over 5 tenants whose active-job caps
refuse some with 429. Every answer must be 201 or a 429 naming the quota; every accepted id must
exist once in the database and have exactly one message on the broker; then every accepted job is
cancelled through the API (no worker runs during the burst) and must end cancelled. Scaling: the
same queue of short CPU jobs drained by one worker, then by two.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api_load import CLIENTS, Burst, submit_burst
from bench.common import ROOT, write_section
from bench.live import FINAL, Deployment, deployment, tiny_job
from service.db.models import Job, Tenant

RELIABILITY = ROOT / "docs" / "reliability.md"
RELIABILITY_HEADER = (
    "# Reliability\n\n"
    "How adaprune behaves under load, faults and hostile input. Each section is written by the\n"
    "script named in its stamp.\n"
)
TENANTS = 5
QUOTA = 150


def broker_messages(redis_url: str, queue: str) -> Counter[str]:
    """How many messages on `queue` carry each job id (kombu's JSON envelope, base64 body)."""
    client = redis.Redis.from_url(redis_url)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    counts: Counter[str] = Counter()
    for message in raw:
        envelope = json.loads(message)
        args, _kwargs, _embed = json.loads(base64.b64decode(envelope["body"]))
        counts[str(args[0])] += 1
    return counts


async def cancel_all(*, url: str, jobs: list[tuple[str, str]]) -> Counter[int]:
    """Cancel each (key, job id) through the API, 50 at a time; returns the status counts."""
    statuses: Counter[int] = Counter()
    semaphore = asyncio.Semaphore(CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def cancel(key: str, job_id: str) -> None:
            async with semaphore:
                response = await http.post(
                    f"/v1/jobs/{job_id}/cancel", headers={"Authorization": f"Bearer {key}"}
                )
                statuses[response.status_code] += 1

        await asyncio.gather(*(cancel(key, job_id) for key, job_id in jobs))
    return statuses


def burst(deploy: Deployment, *, requests: int) -> dict[str, Any]:
    """The 1,000-submission burst and its checks; returns figures and check results."""
    keys = [deploy.key(f"burst-{i}", max_active=QUOTA) for i in range(TENANTS)]
    with deploy.store.sessions() as session:
        ids = {
            name: tenant_id for name, tenant_id in session.execute(select(Tenant.name, Tenant.id))
        }
    key_of = {ids[f"burst-{i}"]: key for i, key in enumerate(keys)}
    result: Burst = asyncio.run(submit_burst(url=deploy.url, keys=keys, requests=requests))
    owner = {}
    with deploy.store.sessions() as session:
        for job in session.scalars(select(Job)):
            owner[job.id] = job
        total_rows = session.scalar(select(func.count()).select_from(Job))
    messages = broker_messages(deploy.env["REDIS_URL"], deploy.queue)
    accepted = result.ids
    checks = {
        "only 201 or 429": set(result.statuses) <= {201, 429},
        "accepted ids unique": len(set(accepted)) == len(accepted),
        "each accepted id in the database once": all(i in owner for i in accepted)
        and total_rows == len(accepted),
        "exactly one broker message per accepted job": set(messages) == set(accepted)
        and all(count == 1 for count in messages.values()),
        "no tenant over its quota": max(
            Counter(owner[i].tenant_id for i in accepted).values(), default=0
        )
        <= QUOTA,
    }
    cancel_statuses = asyncio.run(
        cancel_all(url=deploy.url, jobs=[(key_of[owner[i].tenant_id], i) for i in accepted])
    )
    with deploy.store.sessions() as session:
        states = Counter(session.scalars(select(Job.state)))
    checks["every accepted job final (cancelled)"] = set(states) <= set(FINAL) and sum(
        states.values()
    ) == len(accepted)
    return {
        "burst": result,
        "checks": checks,
        "messages": sum(messages.values()),
        "states": states,
        "cancel_statuses": cancel_statuses,
    }


def drain(deploy: Deployment, *, workers: int, jobs: int) -> float:
    """Start `workers` workers, warm them up, then time a queue of `jobs` short jobs.

    Returns:
        Jobs per hour: `jobs` divided by the time from the first submission to the last end.
    """
    key = deploy.key(f"scale-{workers}", max_active=10**6)
    for _ in range(workers):
        deploy.start_worker()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=deploy.url, headers=headers, timeout=30) as http:

        def submit_and_wait(count: int, label: str) -> float:
            started = time.perf_counter()
            ids = [
                http.post("/v1/jobs", json=scaling_job(f"{label}-{n}")).json()["id"]
                for n in range(count)
            ]
            deadline = time.monotonic() + 600
            for job_id in ids:
                while (job := deploy.store.load_job(job_id)) is None or job.state not in FINAL:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"job {job_id} did not end in 600 s")
                    time.sleep(0.05)
                if job.state != "succeeded":
                    raise RuntimeError(f"job {job_id} {job.state}: {job.error_message}")
            return time.perf_counter() - started

        submit_and_wait(2 * workers, "warm")
        seconds = submit_and_wait(jobs, "timed")
    deploy.stop_workers()
    return jobs / seconds * 3600


def scaling_job(name: str) -> dict[str, Any]:
    """A short CPU job: digits MLP, 2 pre-training epochs, 2 linear steps of 1 epoch."""
    spec = tiny_job(name=name, schedule={"kind": "linear", "steps": 2})
    spec["finetune"] = {"pretrain_epochs": 2, "epochs_per_step": 1, "final_epochs": 0}
    return spec


def render_load(figures: dict[str, Any], *, scaling: dict[int, float], jobs: int) -> str:
    """The markdown of the "load" section."""
    result: Burst = figures["burst"]
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(result.statuses.items()))
    cancels = ", ".join(f"{code}: {n}" for code, n in sorted(figures["cancel_statuses"].items()))
    lines = [
        "## Load",
        "",
        f"Burst: {len(result.latencies)} job submissions from {CLIENTS} concurrent clients "
        f"(closed loop) over {TENANTS} tenants, each capped at {QUOTA} active jobs; one "
        "`adaprune api` (uvicorn) process, SQLite, real Redis, no worker running. After the "
        "checks every accepted job is cancelled through `POST /v1/jobs/{id}/cancel`.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| answers | {codes} |",
        f"| submissions/s | {result.rate:.0f} |",
        f"| latency p50 / p99 / max | {result.ms(50):.1f} / {result.ms(99):.1f} / "
        f"{1000 * max(result.latencies):.1f} ms |",
        f"| broker messages | {figures['messages']} |",
        f"| cancel answers | {cancels} |",
        f"| final states | {dict(figures['states'])} |",
        "",
        "| check | holds |",
        "|---|---|",
        *[f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in figures["checks"].items()],
        "",
        f"Scaling: {jobs} short CPU jobs ({scaling_job('x')['finetune']}, digits MLP) queued at "
        "once and drained by warmed-up `adaprune worker` processes (solo pool, "
        "OMP_NUM_THREADS=1), timed from the first submission to the last job's end.",
        "",
        "| workers | jobs/hour |",
        "|---|---|",
        *[f"| {n} | {rate:.0f} |" for n, rate in sorted(scaling.items())],
        "",
        f"Two workers vs one: **{scaling[2] / scaling[1]:.2f}x** on {os.cpu_count()} cores "
        "shared with the API, the client and other work on the machine.",
    ]
    return "\n".join(lines)


def run_load(*, requests: int, jobs: int) -> str:
    with tempfile.TemporaryDirectory(prefix="adaprune-load-") as tmp:
        with deployment(Path(tmp) / "burst") as deploy:
            deploy.start_api()
            figures = burst(deploy, requests=requests)
        scaling = {}
        for workers in (1, 2):
            with deployment(Path(tmp) / f"scale-{workers}") as deploy:
                deploy.start_api()
                scaling[workers] = drain(deploy, workers=workers, jobs=jobs)
    return render_load(figures, scaling=scaling, jobs=jobs)


def run_security(*, examples: int) -> str:
    """Long fuzz run (in process) and the hostile-input table (pytest against a live API)."""
    import importlib.metadata

    from tests.security.fuzz import fuzz
    from tests.security.test_fuzz import fuzzed_app

    with tempfile.TemporaryDirectory(prefix="adaprune-security-") as tmp:
        fixture = fuzzed_app.__wrapped__(Path(tmp))  # type: ignore[attr-defined]
        app, key = next(fixture)
        report = fuzz(app, headers={"Authorization": f"Bearer {key}"}, examples=examples)
        next(fixture, None)
        table = Path(tmp) / "hostile.json"
        limits = Path(tmp) / "limits.json"
        tests = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "tests/security/test_hostile_inputs.py",
                "tests/security/test_request_limits.py",
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "ADAPRUNE_SECURITY_TABLE": str(table),
                "ADAPRUNE_SECURITY_TABLE_LIMITS": str(limits),
            },
            capture_output=True,
            text=True,
        )
        observed = {**json.loads(table.read_text()), **json.loads(limits.read_text())}
        isolation_table = Path(tmp) / "isolation.json"
        isolation = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "tests/security/test_tenant_isolation.py"],
            cwd=ROOT,
            env={**os.environ, "ADAPRUNE_SECURITY_TABLE": str(isolation_table)},
            capture_output=True,
            text=True,
        )
        isolated = json.loads(isolation_table.read_text())
    isolation_summary = (
        isolation.stdout.strip().splitlines()[-1] if isolation.stdout.strip() else "no output"
    )
    summary = tests.stdout.strip().splitlines()[-1] if tests.stdout.strip() else "no output"
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items()))
    version = importlib.metadata.version("schemathesis")
    lines = [
        "## Security",
        "",
        f"Fuzzing: schemathesis {version}, every operation of `/openapi.json`, positive and "
        f"negative data, {examples} examples per operation and mode, with a valid API key, "
        "against the app in process (real Redis, SQLite). Rule: no 5xx, every 4xx carries "
        "`{error: {code, message}}` and a 422 names the field.",
        "",
        f"- {report.requests} requests in {report.seconds:.0f} s over {report.operations} "
        f"operations; answers {statuses}",
        f"- rule broken: **{len(report.failures)}** times"
        + (f" (first: {report.failures[0]})" if report.failures else ""),
        f"- no negative data exists for: {', '.join(report.skipped) or 'none'}",
        "",
        "Hostile inputs (`tests/security/test_hostile_inputs.py`: live uvicorn API, and a real "
        "worker for the files; `tests/security/test_request_limits.py`: raw sockets against a "
        f"live API with 1 s body/head deadlines and a 16-connection cap; {summary}):",
        "",
        "| input | expected | observed |",
        "|---|---|---|",
        *[
            f"| {name} | {row['expected']} | {row['observed'].replace('|', '/')} |"
            for name, row in observed.items()
        ],
        "",
        "Tenant isolation (`tests/security/test_tenant_isolation.py`: live API and a real worker "
        "on two stacks, `[file]` with artifacts under ADAPRUNE_HOME and a file root `ROOT` that "
        "holds the home, `[s3]` with artifacts on a real S3-compatible server and "
        "`ADAPRUNE_ALLOWED_S3_PREFIXES` naming the service's own bucket and "
        "`s3://tenant-data/{tenant}`; tenant `attacker` reaches for tenant `victim`'s files; "
        '"past the API" jobs are written straight into the store and queue, so the worker '
        f"refuses them alone; {isolation_summary}):",
        "",
        "| input | expected | observed |",
        "|---|---|---|",
        *[
            f"| {name} | {row['expected']} | {row['observed'].replace('|', '/')} |"
            for name, row in isolated.items()
        ],
        "",
        "Keys (`tests/security/test_keys.py`): the database holds only sha256 digests and the "
        "8-character prefix (the SQLite file and its WAL are searched for the key); every check "
        "goes through `hmac.compare_digest`, a wrong key of equal length included; a key revoked "
        "with `adaprune keys revoke` gets 401 at once; with every logger at DEBUG and uvicorn's "
        "access log on, neither the key nor any Authorization value appears in the API's output.",
    ]
    return "\n".join(lines)


def write_reliability(name: str, text: str) -> None:
    """Write section `name` of docs/reliability.md (created with its own header if missing)."""
    if not RELIABILITY.exists():
        RELIABILITY.parent.mkdir(parents=True, exist_ok=True)
        RELIABILITY.write_text(RELIABILITY_HEADER)
    write_section(name, text, path=RELIABILITY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=16, help="jobs in the scaling queue")
    parser.add_argument("--security", action="store_true", help="the security runs instead")
    parser.add_argument("--examples", type=int, default=300, help="fuzz examples (security)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the docs")
    args = parser.parse_args()
    if args.security:
        name, text = "security", run_security(examples=args.examples)
    else:
        name, text = "load", run_load(requests=args.requests, jobs=args.jobs)
    print(text)
    if not args.no_write:
        write_reliability(name, text)


if __name__ == "__main__":
    main()
