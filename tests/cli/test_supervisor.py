"""`up`'s supervisor on real child processes: a killed child is started again with backoff,
one that fails by itself at its first start is given up on at once, a crash loop after a while."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.children import Child
from cli.errors import UserError
from cli.supervisor import MAX_QUICK_DEATHS, Supervised, Supervisor


class Lines:
    def __init__(self) -> None:
        self.said: list[str] = []

    def __call__(self, line: str) -> None:
        self.said.append(line)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait()


def _starter(
    code: str, started: list[subprocess.Popen[bytes]], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=handle, stderr=handle)
    started.append(process)
    return process


def _supervise(code: str, started: list[subprocess.Popen[bytes]], tmp_path: Path) -> Supervised:
    log = tmp_path / "child.log"

    def start() -> subprocess.Popen[bytes]:
        return _starter(code, started, log)

    return Supervised(Child("worker 0", start(), log), start)


def _wait_exit(process: subprocess.Popen[bytes]) -> None:
    process.wait(timeout=30)


def test_a_killed_child_is_started_again_after_its_backoff(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    entry = _supervise("import time; time.sleep(60)", started, tmp_path)
    said = Lines()
    supervisor = Supervisor([entry], say=said)
    first = entry.process
    first.send_signal(signal.SIGKILL)
    _wait_exit(first)
    now = time.monotonic()
    supervisor.tick(now)
    assert entry.process is first and entry.due_at == pytest.approx(now + 1.0)
    assert "the worker 0 exited with status -9" in said.said[0] and "in 1s" in said.said[0]
    supervisor.tick(now + 1.0)
    assert entry.process is not first and entry.process.poll() is None
    assert entry.restarts == 1 and "running again (restart 1)" in said.said[-1]
    # killed again at once: the backoff doubles
    entry.process.send_signal(signal.SIGKILL)
    _wait_exit(entry.process)
    later = time.monotonic()
    supervisor.tick(later)
    assert entry.due_at == pytest.approx(later + 2.0)


def test_a_child_that_fails_at_its_first_start_ends_up_naming_it(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    entry = _supervise(
        "import sys; print('bad setting ADAPRUNE_X'); sys.exit(3)", started, tmp_path
    )
    _wait_exit(entry.process)
    with pytest.raises(UserError) as raised:
        Supervisor([entry], say=Lines()).tick()
    message = str(raised.value)
    assert "the worker 0 exited with status 3: bad setting ADAPRUNE_X" in message
    assert "could not start" in message and "child.log" in message


def test_a_crash_loop_is_given_up_after_the_quick_deaths(
    started: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    entry = _supervise(code, started, tmp_path)
    said = Lines()
    supervisor = Supervisor([entry], say=said)
    with pytest.raises(UserError) as raised:
        for _ in range(MAX_QUICK_DEATHS + 1):
            _wait_exit(entry.process)
            supervisor.tick()
            assert entry.due_at is not None
            supervisor.tick(entry.due_at)
    assert entry.restarts == MAX_QUICK_DEATHS
    assert f"died {MAX_QUICK_DEATHS + 1} times" in str(raised.value)
