"""What a local install exposes by default: loopback sockets only, no file root in the home."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.embedded import child_environment
from cli.main import build_parser
from service.db.migrate import upgrade
from service.settings import ApiSettings
from tests.support.processes import ROOT, free_port
from tests.support.redis_url import redis_test_url


def listening_address(port: int) -> str | None:
    """The local address a TCP socket listens on at `port` (from /proc/net/tcp), or None."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, _remote, state = line.split()[1:4]
            address, hex_port = local.split(":")
            if int(hex_port, 16) == port and state == "0A":  # 0A: LISTEN
                if len(address) == 8:
                    return ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
                return address
    return None


@pytest.fixture
def process_env(tmp_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("ADAPRUNE_API_HOST", "ADAPRUNE_METRICS_HOST")
    }
    env.update(
        PYTHONPATH=str(ROOT),
        ADAPRUNE_HOME=str(tmp_path / "home"),
        REDIS_URL=redis_test_url(9),
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path | None = None) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        address = listening_address(port)
        if address is not None:
            return address
        if process.poll() is not None:
            said = log.read_text(errors="replace")[-2000:] if log is not None else ""
            raise AssertionError(f"the process exited with {process.returncode}: {said}")
        time.sleep(0.1)
    raise AssertionError(f"nothing listened on port {port} within 60 s")


def test_adaprune_api_binds_loopback_unless_told(
    process_env: dict[str, str], started: list[subprocess.Popen[bytes]]
) -> None:
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=process_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started.append(api)
    assert wait_listening(port, api) == "127.0.0.1"


def test_the_api_help_and_default_name_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADAPRUNE_API_HOST", raising=False)
    assert build_parser().parse_args(["api"]).host == "127.0.0.1"


def test_worker_metrics_listen_on_loopback_under_up(
    tmp_path: Path, process_env: dict[str, str], started: list[subprocess.Popen[bytes]]
) -> None:
    settings = ApiSettings(home=tmp_path / "home")
    upgrade(settings.database_url)
    env = child_environment(settings=settings, redis_url=process_env["REDIS_URL"])
    assert env["ADAPRUNE_METRICS_HOST"] == "127.0.0.1"
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli", "worker", "--queue", "defaults-test", "--quiet"],
        cwd=ROOT,
        env={**process_env, **env, "ADAPRUNE_METRICS_PORT": str(port), "ADAPRUNE_DEVICE": "cpu"},
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    started.append(worker)
    assert wait_listening(port, worker, log=tmp_path / "worker.log") == "127.0.0.1"


def test_the_embedded_file_roots_leave_the_home_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADAPRUNE_ALLOWED_FILE_ROOTS", raising=False)
    monkeypatch.chdir(tmp_path)
    settings = ApiSettings(home=tmp_path / "home")
    env = child_environment(settings=settings, redis_url="unix:///x.sock")
    assert env["ADAPRUNE_ALLOWED_FILE_ROOTS"] == str(tmp_path.resolve())
    assert str(settings.home) not in env["ADAPRUNE_ALLOWED_FILE_ROOTS"].split(",")
