"""`adaprune up` supervises its children: a SIGKILLed worker, API or embedded Redis is started
again, the stack stays up, and the job that was running still succeeds (taken over and resumed
from its checkpoint)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.ports import free_port
from tests.support.deployment import tiny_spec
from tests.support.processes import descendants, still_running
from tests.workers.test_embedded_shutdown import _wait_until_serving, children_of, running

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    home: Path
    url: str

    @property
    def headers(self) -> dict[str, str]:
        key = (self.home / "api_key").read_text().strip()
        return {"Authorization": f"Bearer {key}"}

    def log(self) -> str:
        return (self.home / "up.log").read_text(errors="replace")

    def child(self, word: str) -> int:
        """The pid of the child of `up` whose command line holds `word`."""
        for pid in children_of(self.process.pid):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if word.encode() in command and running(pid):
                return pid
        raise AssertionError(f"no child of up runs {word!r}: {self.log()}")

    def job(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v1/jobs/{job_id}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(self, what: str, check: Any, *, timeout_s: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.process.poll() is None, f"up exited: {self.log()}"
            try:
                found = check()
            except httpx.HTTPError:
                found = None
            if found:
                return found
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.log()}"
            time.sleep(0.2)

    def ready(self) -> bool:
        return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200


@pytest.fixture
def stack() -> Iterator[Stack]:
    home = Path(tempfile.mkdtemp(prefix="ap-sv-", dir="/tmp"))
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ADAPRUNE_")
        and name not in ("REDIS_URL", "DATABASE_URL", "ARTIFACT_URL")
    }
    env.update(
        ADAPRUNE_HOME=str(home),
        ADAPRUNE_METRICS_PORT="0",
        ADAPRUNE_HEARTBEAT_S="1",
        ADAPRUNE_DEVICE="cpu",
        OMP_NUM_THREADS="1",
    )
    with (home / "up.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli", "up", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children: set[int] = set()
    try:
        _wait_until_serving(process, home=home, url=f"http://127.0.0.1:{port}")
        children = children_of(process.pid)
        yield Stack(process, home, f"http://127.0.0.1:{port}")
    finally:
        for pid in children_of(process.pid) | children | {process.pid}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def test_killed_children_come_back_and_the_running_job_still_succeeds(stack: Stack) -> None:
    spec = tiny_spec(steps=4, epochs_per_step=8)
    created = httpx.post(f"{stack.url}/v1/jobs", json=spec, headers=stack.headers, timeout=10)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    stack.wait("the job to run a step", lambda: (stack.job(job_id).get("sparsity") or 0) > 0)

    worker = stack.child("cli worker")
    worker_tree = descendants(worker)
    assert len(worker_tree) >= 2, worker_tree  # its forkserver and the job's engine child
    os.kill(worker, signal.SIGKILL)
    assert still_running(worker_tree, within_s=5) == set()
    stack.wait("the worker's restart", lambda: "worker 0 is running again" in stack.log())
    assert "the worker 0 exited with status -9" in stack.log()

    os.kill(stack.child("redis-server"), signal.SIGKILL)
    stack.wait("the Redis restart", lambda: "embedded Redis is running again" in stack.log())
    stack.wait("readiness after the Redis restart", stack.ready)

    os.kill(stack.child("cli api"), signal.SIGKILL)
    stack.wait("the API's restart", lambda: "API is running again" in stack.log())
    stack.wait("readiness after the API restart", stack.ready)

    final = stack.wait(
        "the job to end",
        lambda: (job := stack.job(job_id))["state"] in ("succeeded", "failed", "cancelled") and job,
        timeout_s=240,
    )
    assert (final["state"], final["error"]) == ("succeeded", None), final
    assert final["attempt"] == 2

    again = httpx.post(f"{stack.url}/v1/jobs", json=tiny_spec(), headers=stack.headers, timeout=10)
    assert again.status_code == 201, again.text
    after = stack.wait(
        "a job submitted after the restarts",
        lambda: (job := stack.job(again.json()["id"]))["state"] in ("succeeded", "failed") and job,
        timeout_s=240,
    )
    assert after["state"] == "succeeded", after

    tree = descendants(stack.process.pid)
    stack.process.send_signal(signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0
    assert still_running(tree, within_s=15) == set()
