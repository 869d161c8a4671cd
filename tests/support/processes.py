"""Child processes for integration tests: free ports, logged subprocesses, polling, shutdown."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn, TypeVar

import httpx
import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"

T = TypeVar("T")


def unavailable(what: str) -> NoReturn:
    """Skip locally when something the test needs is missing; fail under CI=true, where the
    environment promises it (scripts/services.sh)."""
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not available")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, *, chars: int = 3000) -> str:
    """The last `chars` characters of a log file ('' when it does not exist)."""
    if not path.is_file():
        return ""
    return path.read_text(errors="replace")[-chars:]


@contextmanager
def running(
    argv: Sequence[str],
    *,
    log: Path,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGTERM,
    stop_timeout_s: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` with stdout and stderr in `log`; stop it (then kill it) when the block ends.

    Args:
        argv: the command line.
        log: file that receives the process's output.
        env: its environment (default: this process's).
        stop_signal: the signal that asks it to stop.
        stop_timeout_s: how long to wait before SIGKILL.

    Yields:
        the running process.
    """
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(stop_signal)
                try:
                    process.wait(timeout=stop_timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def wait_until(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float,
    alive: Sequence[tuple[subprocess.Popen[bytes], Path]] = (),
    interval_s: float = 0.2,
) -> T:
    """Call `probe` until it returns something other than None.

    Args:
        probe: returns None while the condition does not hold yet.
        what: the condition, for the failure message.
        timeout_s: how long to try.
        alive: processes (with their logs) that must not exit meanwhile.
        interval_s: pause between tries.

    Returns:
        the first non-None value of `probe`.

    Raises:
        AssertionError: on timeout, or when one of `alive` exited (its log tail in the message).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        for process, log in alive:
            if process.poll() is not None:
                raise AssertionError(
                    f"{process.args!r} exited with {process.returncode} while waiting for "
                    f"{what}:\n{log_tail(log)}"
                )
        if time.monotonic() > deadline:
            details = "\n".join(f"--- {log.name}\n{log_tail(log)}" for _, log in alive)
            raise AssertionError(f"no {what} after {timeout_s}s\n{details}")
        time.sleep(interval_s)


def parent_pids() -> dict[int, int]:
    """Every running process's parent pid (zombies left out: they have exited)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        state, parent = text[text.rindex(")") + 2 :].split()[:2]
        if state not in ("Z", "X"):
            parents[int(entry.name)] = int(parent)
    return parents


def descendants(pid: int) -> set[int]:
    """The running processes below `pid` in the process tree, at any depth."""
    parents = parent_pids()
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def still_running(pids: set[int], *, within_s: float) -> set[int]:
    """The pids of `pids` still running after waiting up to `within_s` for them to exit."""
    deadline = time.monotonic() + within_s
    alive = pids & set(parent_pids())
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = pids & set(parent_pids())
    return alive


def http_text(url: str) -> str | None:
    """The body of GET `url` when it answers 200, else None (also when nothing listens)."""
    try:
        response = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


@contextmanager
def flushed_redis(url: str) -> Iterator[redis.Redis]:
    """A client of the Redis database at `url`, emptied before and after (unavailable if down)."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError:
        unavailable(f"Redis at {url}")
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
