"""The client commands on a real API and worker (PostgreSQL, Redis): list, cancel, logs,
submit's validation errors, --version and the help of every argument."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cli.main import build_parser
from tests.support.deployment import Deployment, deployment, tiny_spec
from tests.support.processes import ROOT


def adaprune(
    *args: str, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("cli")) as running:
        yield running


@pytest.fixture
def client_env(live: Deployment, tmp_path: Path) -> dict[str, str]:
    return {
        "ADAPRUNE_URL": live.api_url,
        "ADAPRUNE_API_KEY": live.key,
        "ADAPRUNE_HOME": str(tmp_path / "home"),
    }


def write_spec(path: Path, spec: dict[str, object]) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_submit_names_every_bad_field(client_env: dict[str, str], tmp_path: Path) -> None:
    spec = tiny_spec()
    spec["prune"]["target_sparsity"] = 1.5
    spec["prune"]["criterion"] = "random"
    spec["seed"] = "x"
    done = adaprune("submit", write_spec(tmp_path / "bad.yaml", spec), env=client_env)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines[0].startswith("adaprune: error:") and "3 problem" in lines[0]
    fields = sorted(line.split(":")[0].strip() for line in lines[1:])
    assert fields == ["prune.criterion", "prune.target_sparsity", "seed"]


def test_submit_logs_follow_and_list(
    live: Deployment, client_env: dict[str, str], tmp_path: Path
) -> None:
    spec = {**tiny_spec(), "name": "cli-follow"}
    submitted = adaprune("submit", write_spec(tmp_path / "ok.yaml", spec), env=client_env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    followed = adaprune("logs", job_id, "--follow", env=client_env)
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    assert " claimed " in lines[0] and "attempt 1 claimed by worker" in lines[0]
    assert any(" step " in line and "step 0: dense baseline" in line for line in lines)
    assert " finished " in lines[-1] and "succeeded" in lines[-1]
    # without --follow the same events, all at once
    again = adaprune("logs", job_id, env=client_env)
    assert again.returncode == 0 and again.stdout.splitlines() == lines

    listed = adaprune("list", "--name", "cli-follow", "--state", "succeeded", env=client_env)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:2] == ["id", "state"]
    assert len(rows) == 2 and rows[1].startswith(job_id) and "succeeded" in rows[1]
    assert rows[1].rstrip().endswith("cli-follow") and "/0.600" in rows[1]
    none = adaprune("list", "--name", "cli-follow", "--state", "failed", env=client_env)
    assert none.stdout.splitlines()[1:] == []


def test_cancel_a_job_and_its_log_says_so(
    live: Deployment, client_env: dict[str, str], tmp_path: Path
) -> None:
    spec = {**tiny_spec(steps=30, epochs_per_step=5), "name": "cli-cancel"}
    job_id = adaprune(
        "submit", write_spec(tmp_path / "long.yaml", spec), env=client_env
    ).stdout.strip()
    cancelled = adaprune("cancel", job_id, env=client_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() in (f"job {job_id}: cancelled", f"job {job_id}: cancelling")
    followed = adaprune("logs", job_id, "-f", env=client_env)
    assert followed.returncode == 1  # the job did not succeed
    assert "cancelled" in followed.stdout.splitlines()[-1]


def test_version_and_help_of_every_argument(client_env: dict[str, str]) -> None:
    version = adaprune("--version", env=client_env)
    assert version.returncode == 0 and version.stdout.strip() == "adaprune 0.1.0"
    talking = {"submit", "status", "list", "cancel", "logs", "pull"}
    seen = set()

    def check(parser: argparse.ArgumentParser, name: str) -> None:
        seen.add(name)
        for action in parser._actions:
            assert action.help, f"adaprune {name}: {action.dest} has no help"
            if isinstance(action, argparse._SubParsersAction):
                for child, sub in action.choices.items():
                    check(sub, f"{name} {child}".strip())
        if name in talking:
            text = parser.format_help()
            assert "ADAPRUNE_URL" in text and "ADAPRUNE_API_KEY" in text, name

    check(build_parser(), "")
    assert talking | {"keys create", "keys revoke", "up", "worker"} <= seen
    shown = adaprune("logs", "--help", env=client_env).stdout
    assert "--follow" in shown and "ADAPRUNE_API_KEY" in shown
    bad = adaprune("list", "--limit", "500", env=client_env)
    assert bad.returncode == 2 and "--limit" in bad.stderr


def readme_client_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python client") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("```", start)]


def test_the_readme_client_example_runs(live: Deployment, tmp_path: Path) -> None:
    example = tmp_path / "example.py"
    example.write_text(readme_client_example())
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "ADAPRUNE_URL": live.api_url,
            "ADAPRUNE_API_KEY": live.key,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("step 0: sparsity 0.00, accuracy ")
    assert any(line.startswith("succeeded sparsity ") for line in lines)
    assert any(line.startswith("info claimed attempt 1 claimed by worker") for line in lines)
    pulled = Path(lines[-1].removeprefix("artifact: "))
    assert pulled.is_relative_to(tmp_path / "out") and (pulled / "manifest.json").is_file()
