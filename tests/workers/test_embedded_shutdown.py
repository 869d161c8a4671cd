"""`adaprune up` never leaves its children behind: not on a double Ctrl-C, not when killed."""

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

import httpx
import pytest
import redis

from cli.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0
GONE_WITHIN_S = 15.0

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def children_of(pid: int) -> set[int]:
    """The pids whose parent is `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def running(pid: int) -> bool:
    """True while `pid` exists and has not exited (a zombie has exited)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def survivors(pids: set[int], *, within_s: float) -> set[int]:
    """The pids still running after waiting up to `within_s` for all of them to exit."""
    deadline = time.monotonic() + within_s
    alive = {pid for pid in pids if running(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {pid for pid in alive if running(pid)}
    return alive


@dataclass
class Up:
    process: subprocess.Popen[bytes]
    children: set[int]
    home: Path


@pytest.fixture
def service_up() -> Iterator[Up]:
    # A short home: the embedded Redis's unix socket path must fit in sun_path.
    home = Path(tempfile.mkdtemp(prefix="ap-up-", dir="/tmp"))
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("ADAPRUNE_")
        and name not in ("REDIS_URL", "DATABASE_URL", "ARTIFACT_URL")
    }
    env.update(ADAPRUNE_HOME=str(home), ADAPRUNE_METRICS_PORT="0")
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
        assert len(children) == 3, f"expected redis, API and worker, found {children}"
        yield Up(process, children, home)
    finally:
        for pid in children | {process.pid}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def _wait_until_serving(process: subprocess.Popen[bytes], *, home: Path, url: str) -> None:
    """Wait for the API's /healthz and for the worker to bind its queue in the embedded Redis."""
    deadline = time.monotonic() + START_TIMEOUT_S
    healthy = consuming = False
    while not (healthy and consuming):
        if process.poll() is not None:
            pytest.fail(f"adaprune up exited early:\n{(home / 'up.log').read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"adaprune up did not start:\n{(home / 'up.log').read_text()}")
        if not healthy:
            try:
                healthy = httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                healthy = False
        if healthy and not consuming:
            client = redis.Redis(unix_socket_path=str(home / "redis" / "redis.sock"))
            try:
                consuming = bool(client.exists("_kombu.binding.gpu"))
            except redis.RedisError:
                consuming = False
            finally:
                client.close()
        time.sleep(0.2)


def test_a_second_ctrl_c_during_shutdown_still_stops_every_child(service_up: Up) -> None:
    service_up.process.send_signal(signal.SIGINT)
    time.sleep(0.3)
    service_up.process.send_signal(signal.SIGINT)
    assert survivors(service_up.children, within_s=GONE_WITHIN_S) == set()
    assert service_up.process.wait(timeout=GONE_WITHIN_S) == 0


def test_children_exit_when_up_is_killed(service_up: Up) -> None:
    service_up.process.send_signal(signal.SIGKILL)
    service_up.process.wait(timeout=10)
    assert survivors(service_up.children, within_s=GONE_WITHIN_S) == set()
