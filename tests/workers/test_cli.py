"""The `adaprune` command line: user errors are one line, keys print alone, `up` works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
import yaml

from service.auth import hash_key
from service.db.migrate import upgrade
from service.db.models import ApiKey
from service.store import JobStore
from tests.support.deployment import tiny_spec
from tests.support.redis_url import redis_test_url
from tests.workers.conftest import ROOT, free_port


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_keys_create_prints_the_key_alone_and_stores_only_its_hash(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    done = _cli("keys", "create", "--tenant", "acme", env={"DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ap_")
    store = JobStore.from_url(url)
    with store.tx() as session:
        assert session.query(ApiKey).filter_by(key_hash=hash_key(lines[0])).count() == 1
    store.engine.dispose()
    revoked = _cli("keys", "revoke", lines[0], env={"DATABASE_URL": url})
    assert revoked.returncode == 0
    again = _cli("keys", "revoke", lines[0], env={"DATABASE_URL": url})
    assert again.returncode == 1 and again.stderr.count("\n") == 1


def test_client_commands_report_user_errors_in_one_line_without_traceback(tmp_path: Path) -> None:
    no_key = _cli(
        "status", "some-job", env={"ADAPRUNE_HOME": str(tmp_path), "ADAPRUNE_API_KEY": ""}
    )
    assert no_key.returncode != 0
    assert no_key.stderr.startswith("adaprune: error:") and "ADAPRUNE_API_KEY" in no_key.stderr
    assert no_key.stderr.count("\n") == 1 and "Traceback" not in no_key.stderr

    url = f"http://127.0.0.1:{free_port()}"
    down = _cli(
        "status",
        "00000000-0000-4000-8000-000000000000",
        env={"ADAPRUNE_URL": url, "ADAPRUNE_API_KEY": "ap_x"},
    )
    assert down.returncode != 0 and "cannot reach the API" in down.stderr
    assert down.stderr.count("\n") == 1

    missing = _cli("submit", str(tmp_path / "nope.yaml"), env={"ADAPRUNE_API_KEY": "ap_x"})
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    assert missing.stderr.count("\n") == 1


def test_the_api_command_never_imports_torch() -> None:
    code = (
        "import sys, uvicorn\n"
        "def run(self): print(type(self.config.app).__name__, self.config.port)\n"
        "uvicorn.Server.run = run\n"
        "from cli.main import main\n"
        "assert main(['api', '--port', '8123']) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_test_url(14)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["FastAPI", "8123", "False"]


def test_up_demo_runs_a_job_end_to_end_and_stops_everything(tmp_path: Path) -> None:
    home = tmp_path / "h"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec()))
    done = _cli(
        "up",
        "--port",
        "0",
        "--demo",
        str(spec),
        env={"ADAPRUNE_HOME": str(home), "ADAPRUNE_METRICS_PORT": "0", "OMP_NUM_THREADS": "1"},
        timeout=150,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    artifact = Path(summary["artifact"])
    assert sorted(p.name for p in artifact.iterdir()) == [
        "curve.png",
        "manifest.json",
        "steps.csv",
        "weights.safetensors",
    ]
    assert "artifact verified" in done.stderr
    key = (home / "api_key").read_text().strip()
    assert key in done.stderr and (home / "api_key").stat().st_mode & 0o077 == 0
    socket_path = home / "redis" / "redis.sock"
    try:
        answered = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping()
    except (redis.ConnectionError, FileNotFoundError):
        answered = False
    assert not answered
