"""Fault injection at full counts; writes the "faults" section of docs/reliability.md.

Real processes throughout: a private redis-server (persistence off), a private PostgreSQL
cluster, `adaprune worker` processes, SQLite or PostgreSQL, file:// artifact storage.

    python -m bench.chaos [--kills 20] [--broker-jobs 8] [--db-jobs 4] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ROOT, write_section
from tests.faults import scenarios
from tests.faults.harness import Deployment, PostgresCluster, RedisServer
from tests.faults.scenarios import Figures

RELIABILITY = ROOT / "docs" / "reliability.md"
MAX_ATTEMPTS = 5


def _seconds(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s"


def run(*, kills: int, broker_jobs: int, db_jobs: int) -> list[Figures]:
    """Run every scenario once; returns their figures in order."""
    results: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="adaprune-chaos-") as tmp:
        root = Path(tmp)
        broker = RedisServer(root / "redis")
        broker.start()
        try:
            dep = Deployment.open(
                root / "sqlite",
                database_url=f"sqlite:///{root / 'sqlite' / 'adaprune.db'}",
                redis_url=broker.url,
                max_attempts=MAX_ATTEMPTS,
            )
            try:
                dep.start_worker()
                dep.start_worker()
                dep.wait_workers_ready()
                results.append(scenarios.sigkill(dep, kills=kills, kills_per_job=2, seed=0))
                _show(results[-1])
                results.append(scenarios.broker_restart(dep, broker, jobs=broker_jobs))
                _show(results[-1])
                for scenario in (
                    scenarios.storage_unreachable,
                    scenarios.storage_partial_upload,
                    scenarios.diverged,
                    scenarios.max_runtime,
                ):
                    results.append(scenario(dep))
                    _show(results[-1])
            finally:
                dep.close()
            cluster = PostgresCluster()
            try:
                cluster.start()
                pg = Deployment.open(root / "pg", database_url=cluster.url, redis_url=broker.url)
                try:
                    pg.start_worker()
                    pg.start_worker()
                    pg.wait_workers_ready()
                    results.append(scenarios.database_outage(pg, cluster, jobs=db_jobs))
                    _show(results[-1])
                finally:
                    pg.close()
            finally:
                cluster.destroy()
        finally:
            broker.kill()
    return results


def _show(figures: Figures) -> None:
    print(json.dumps({**figures.__dict__}, default=str), flush=True)


def report(results: list[Figures], *, seconds: float) -> str:
    """The markdown section for docs/reliability.md."""
    by = {f.name: f for f in results}
    kill, restart, outage = by["sigkill"], by["broker_restart"], by["database_outage"]
    gone, partial = by["storage_unreachable"], by["storage_partial_upload"]
    nan, budget = by["training_diverged"], by["max_runtime"]
    points = kill.values["kill_points"]
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(outage.values["status_counts"].items()))
    problems = [p for f in results for p in f.problems]
    lines = [
        "## Faults",
        "",
        "`bench/chaos.py` injects each fault into a real deployment (private redis-server with",
        "persistence off, `adaprune worker` processes, SQLite or a private PostgreSQL cluster,",
        "file:// storage; heartbeat 1 s, stale after 3 s) and checks every job afterwards: one",
        '"finished" record per job in the worker logs, steps 0..last with no gap or duplicate,',
        "exactly the four artifact files listed and stored with matching sha256, no checkpoints",
        f"left. Tiny jobs (breast_cancer, MLP [16]). Whole run: {seconds:.0f} s.",
        "",
        "| fault | jobs | lost | run twice | other figures |",
        "|---|---|---|---|---|",
        f"| SIGKILL the job's worker at a random step (+0-50 ms), {kill.values['kills']} kills, "
        f"≤2 per job | {kill.jobs} | {kill.lost} | {kill.run_twice} | metric differs from the "
        f"uninterrupted run: {kill.values['mismatched_metrics']}; weights file differs: "
        f"{kill.values['mismatched_weights']}; killed after step {min(points, default=-1)}.."
        f"{max(points, default=-1)}; kill to resumed: {_seconds(kill.values['recovery_s'])} |",
        f"| Redis killed and restarted after 2 s, "
        f"{restart.values['queued_at_restart']} queued + "
        f"{restart.values['running_at_restart']} running | {restart.jobs} | {restart.lost} | "
        f"{restart.run_twice} | lost messages re-sent by the reaper: {restart.values['resent']}; "
        f"all final {restart.values['all_final_after_restart_s']:.1f} s after the restart |",
        f"| PostgreSQL stopped 4 s under load | {outage.jobs} | {outage.lost} | "
        f"{outage.run_twice} | API during the outage: {outage.values['requests_during_outage']} "
        f"requests, status {statuses}; slowest answer {outage.values['slowest_answer_s']:.2f} s; "
        f"API healthy {outage.values['api_recovery_s']:.2f} s after restart; worker write "
        f"retries {outage.values['write_retries']}; leases taken over "
        f"{outage.values['takeovers']} |",
        f"| artifact root replaced by a file mid-job | 1 | - | - | {gone.values['state']} "
        f"`{gone.values['error_code']}` after {gone.values['attempts']} attempts; artifact rows "
        f"0, files 0 |",
        f"| weights.safetensors unstorable on the first publish | 1 | {partial.lost} | "
        f"{partial.run_twice} | failed uploads {partial.values['failed_uploads']}; partial set "
        f"never listed; succeeded on attempt {partial.values['attempts']} |",
        f"| loss NaN at step 2 (entry-point model) | 1 | - | - | failed `training_diverged`; "
        f"checkpoint kept: {nan.values['latest_checkpoint']} |",
        f"| budget.max_runtime_s = 1 s, 60 steps planned | 1 | {budget.lost} | - | "
        f"{budget.values['state']}, stop_reason `{budget.values['stop_reason']}` after "
        f"{budget.values['steps']} steps, sparsity {budget.values['sparsity']:.2f} |",
        "",
        f"Problems found by the audits: {len(problems)}"
        + ("" if not problems else " - " + "; ".join(problems[:10])),
        "",
        "Behaviour these runs pin down:",
        "",
        "- A dead worker's lease goes stale after 3 heartbeats; any live worker's reaper",
        "  requeues the job and it resumes from its last per-step checkpoint, ending with the",
        "  same metric and the same weights bytes as an uninterrupted run.",
        "- Redis restarts lose queued and unacknowledged messages when persistence is off. Each",
        "  reaper compares queued jobs older than 3 heartbeats with the broker's queue lists and",
        "  kombu's `unacked` hash and re-sends a job missing in two sweeps in a row; duplicates",
        "  are no-ops (atomic claim, live lease, final state).",
        "- While the database is down the API answers 503 `database_unavailable` at once;",
        "  workers retry each write in place with backoff (up to 120 s), and the reaper counts",
        "  staleness only after the database has answered for 3 heartbeats, so an outage never",
        "  hands healthy jobs to another worker.",
        "- Storage calls (and a full local disk) are tried 3 times in place, then the job goes",
        "  back to the queue (a counted attempt) and resumes from its checkpoint; at the last",
        "  attempt the job fails `storage_unavailable` with the failing operation in its",
        "  message. Artifact rows are written in one transaction after every file is stored,",
        "  and the files of a failed publish are removed.",
        "- A NaN or infinite loss fails the job `training_diverged`; its checkpoints stay in",
        "  storage. A job that reaches `budget.max_runtime_s` (or `max_epochs`) stops, skips",
        "  the final fine-tuning, exports what it has and ends `succeeded` with",
        "  `result.stop_reason` naming the budget: the user gets the best model reached in time.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--broker-jobs", type=int, default=8)
    parser.add_argument("--db-jobs", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.kills < 1 or args.broker_jobs < 1 or args.db_jobs < 1:
        raise ValueError("--kills, --broker-jobs and --db-jobs must be at least 1")
    started = time.monotonic()
    results = run(kills=args.kills, broker_jobs=args.broker_jobs, db_jobs=args.db_jobs)
    text = report(results, seconds=time.monotonic() - started)
    print(text)
    if not args.no_write:
        if not RELIABILITY.exists():
            RELIABILITY.parent.mkdir(parents=True, exist_ok=True)
            RELIABILITY.write_text("# Reliability\n")
        write_section("faults", text, path=RELIABILITY)
    failed = any(f.lost or f.run_twice or f.problems for f in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
