"""Commands on a fresh ADAPRUNE_HOME, an unmigrated external database, a taken metrics port and
a service process that fails to start: each works, or fails fast in one line naming the cause."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from service.auth import hash_key
from service.db.models import ApiKey
from service.store import JobStore
from tests.support.deployment import postgres_database, tiny_spec
from tests.support.processes import ROOT
from tests.support.redis_url import redis_test_url


def adaprune(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ADAPRUNE_HOME")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**clean, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_keys_create_on_a_fresh_home_migrates_the_embedded_database(tmp_path: Path) -> None:
    home = tmp_path / "fresh"
    done = adaprune("keys", "create", "--tenant", "newcomer", env={"ADAPRUNE_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    store = JobStore.from_url(f"sqlite:///{home / 'adaprune.db'}")
    try:
        with store.tx() as session:
            assert session.query(ApiKey).filter_by(key_hash=hash_key(key)).count() == 1
    finally:
        store.engine.dispose()
    again = adaprune("keys", "create", "--tenant", "newcomer", env={"ADAPRUNE_HOME": str(home)})
    assert again.returncode == 0 and again.stdout.strip() != key


def test_an_unmigrated_external_database_says_to_run_migrate(tmp_path: Path) -> None:
    with postgres_database("adaprune_cli_fresh") as url:
        env = {"ADAPRUNE_HOME": str(tmp_path), "DATABASE_URL": url}
        refused = adaprune("keys", "create", "--tenant", "x", env=env)
        assert refused.returncode != 0
        assert refused.stderr.count("\n") == 1, refused.stderr
        assert "run `adaprune migrate`" in refused.stderr
        assert "sqlalchemy" not in refused.stderr.lower() and "Traceback" not in refused.stderr
        worker = adaprune("worker", env={**env, "ADAPRUNE_METRICS_PORT": "0"})
        assert worker.returncode != 0 and "run `adaprune migrate`" in worker.stderr
        assert adaprune("migrate", env=env).returncode == 0
        assert adaprune("keys", "create", "--tenant", "x", env=env).returncode == 0


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = {"ADAPRUNE_HOME": str(tmp_path), "DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/x"}
    done = adaprune("keys", "create", "--tenant", "x", env=env)
    assert done.returncode != 0 and done.stderr.count("\n") == 1
    assert "cannot reach the database" in done.stderr and "secret" not in done.stderr


def test_a_worker_whose_metrics_port_is_taken_exits_naming_it(
    tmp_path: Path, taken_port: int
) -> None:
    env = {
        "ADAPRUNE_HOME": str(tmp_path),
        "REDIS_URL": redis_test_url(14),
        "ADAPRUNE_METRICS_PORT": str(taken_port),
    }
    started = time.monotonic()
    done = adaprune("worker", "--quiet", env=env, timeout=60)
    assert done.returncode == 2
    assert time.monotonic() - started < 30
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert f"metrics port {taken_port}" in lines[0] and "ADAPRUNE_METRICS_PORT" in lines[0]


def test_up_refuses_a_taken_metrics_port_by_name(tmp_path: Path, taken_port: int) -> None:
    env = {"ADAPRUNE_HOME": str(tmp_path / "h"), "ADAPRUNE_METRICS_PORT": str(taken_port)}
    done = adaprune("up", "--port", "0", "--demo", env=env, timeout=60)
    assert done.returncode != 0 and done.stderr.count("\n") == 1, done.stderr
    assert f"port {taken_port} (ADAPRUNE_METRICS_PORT)" in done.stderr


def test_up_demo_stops_within_seconds_when_a_worker_cannot_start(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec()))
    # the workers read ADAPRUNE_DEVICE and refuse this value; the API does not read it
    env = {"ADAPRUNE_HOME": str(tmp_path / "h"), "ADAPRUNE_DEVICE": "abacus"}
    started = time.monotonic()
    done = adaprune("up", "--port", "0", "--demo", str(spec), env=env, timeout=120)
    assert done.returncode != 0
    assert time.monotonic() - started < 60
    errors = [line for line in done.stderr.splitlines() if line.startswith("adaprune: error:")]
    assert len(errors) == 1, done.stderr
    assert "the worker 0 exited with status" in errors[0] and "abacus" in errors[0]
    assert "worker-0.log" in errors[0]
