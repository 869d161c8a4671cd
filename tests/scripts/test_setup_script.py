"""scripts/setup.sh: pip runs on the first call and after any change, never on a current .venv.

The script runs for real, in a temporary copy of the project's layout, with a stand-in
`.venv/bin/python` that records its command lines instead of installing anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/usr/bin/env bash
echo "$*" >>"$FAKE_CALLS"
if [ "$1 $2" = "-m pip" ]; then exit "${FAKE_PIP_RC:-0}"; fi
exit 0
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    # chromium is "installed", so the browser step has nothing to do.
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "chromium").write_text("#!/bin/sh\nexit 0\n")
    (tools / "chromium").chmod(0o755)
    return tmp_path


def _setup(project: Path, **env: str) -> list[str]:
    """Run setup.sh; return the command lines the stand-in python got during this run."""
    calls = project / "calls.log"
    calls.write_text("")
    environment = {k: v for k, v in os.environ.items() if k != "ADAPRUNE_TORCH_SPEC"}
    environment.update(PATH=f"{project / 'tools'}:{os.environ['PATH']}", FAKE_CALLS=str(calls))
    environment.update(env)
    done = subprocess.run(
        ["bash", str(project / "scripts" / "setup.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if env.get("FAKE_PIP_RC", "0") == "0":
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert "setup failed: pip install" in done.stderr
    return [line for line in calls.read_text().splitlines() if line.startswith("-m pip")]


def test_second_run_on_a_current_venv_runs_no_pip(project: Path) -> None:
    assert _setup(project) == ["-m pip install -e .[dev]"]
    assert (project / ".venv" / "setup.stamp").is_file()
    assert _setup(project) == []


def test_a_changed_pyproject_or_torch_spec_reinstalls(project: Path) -> None:
    _setup(project)
    with (project / "pyproject.toml").open("a") as handle:
        handle.write("\n# changed\n")
    assert _setup(project) == ["-m pip install -e .[dev]"]
    assert _setup(project) == []
    assert _setup(project, ADAPRUNE_TORCH_SPEC="torch==2.12.0") == ["-m pip install -e .[dev]"]
    assert _setup(project, ADAPRUNE_TORCH_SPEC="torch==2.12.0") == []


def test_a_failed_install_leaves_no_stamp_so_the_next_run_retries(project: Path) -> None:
    _setup(project)
    (project / "pyproject.toml").write_text((project / "pyproject.toml").read_text() + "\n#\n")
    _setup(project, FAKE_PIP_RC="1")
    assert not (project / ".venv" / "setup.stamp").exists()
    assert _setup(project) == ["-m pip install -e .[dev]"]
