"""The static checks CI runs: the import contracts hold on this tree and break on an offending
import, and scripts/test.sh stops on any failed check and on a run that collects no tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "service", "workers", "cli")
BIN = Path(sys.prefix) / "bin"


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed in {BIN} (pip install -e '.[dev]')")
    return str(path)


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("lint-imports"), "--no-logo", "--no-cache"],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_packages(target: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__py*"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_import_contracts_hold() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "offending", "contract"),
    [
        ("core/masks.py", "import service.settings", "core imports neither"),
        ("core/spec.py", "import cli.main", "core imports neither"),
        ("service/schemas.py", "import torch", "the service imports neither"),
        ("service/metrics.py", "import workers", "the service imports neither"),
        ("core/spec.py", "import torch", "the job spec and the contract are torch-free"),
        # indirect: the contract reaches torch through an engine module
        ("core/contract/version.py", "import core.masks", "the job spec and the contract"),
    ],
)
def test_an_offending_import_breaks_its_contract(
    tmp_path: Path, module: str, offending: str, contract: str
) -> None:
    tree = copy_packages(tmp_path)
    path = tree / module
    path.write_text(f"{path.read_text()}\n{offending}  # offending\n")
    done = lint_imports(tree)
    assert done.returncode != 0, done.stdout
    broken = [line for line in done.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), done.stdout


def tiny_tree(root: Path) -> Path:
    """A project with the real configuration and scripts but four one-file packages, so that
    each check runs in seconds."""
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    shutil.copytree(ROOT / "scripts", root / "scripts")
    for package in PACKAGES:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text('"""A package."""\n')
    # every module the import contracts name must exist
    for name in ("spec", "spec_sources", "spec_types"):
        (root / "core" / f"{name}.py").write_text('"""The spec."""\n')
    (root / "core" / "contract").mkdir()
    (root / "core" / "contract" / "__init__.py").write_text('"""The contract."""\n')
    (root / "tests").mkdir()
    return root


def run_tests(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/test.sh", "-p", "no:cacheprovider"],
        cwd=tree,
        env={**os.environ, "ADAPRUNE_SKIP_SETUP": "1", "ADAPRUNE_VENV": sys.prefix},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_clean_tree_passes_the_checks_and_no_tests_collected_fails(tmp_path: Path) -> None:
    done = run_tests(tiny_tree(tmp_path))
    assert "quality checks passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 5, done.stdout + done.stderr
    assert "collected no tests" in done.stderr


def test_each_failed_check_fails_the_run_and_is_named(tmp_path: Path) -> None:
    tree = tiny_tree(tmp_path)
    (tree / "core" / "spec.py").write_text('"""The spec."""\n\nimport os\n')  # unused import
    (tree / "cli" / "__init__.py").write_text('"""A package."""\nx  =  1\n')  # not formatted
    (tree / "workers" / "__init__.py").write_text('"""A package."""\n\n\ndef f(x):\n    return x\n')
    (tree / "core" / "__init__.py").write_text('"""A package."""\n\nimport service  # noqa: F401\n')
    done = run_tests(tree)
    assert done.returncode == 1, done.stdout + done.stderr
    failed = next(line for line in done.stderr.splitlines() if line.startswith("quality checks"))
    assert failed == "quality checks failed: ruff check ruff format mypy import contracts"
    output = done.stdout + done.stderr
    assert "F401" in output and "--> cli/__init__.py" in output
    assert "workers/__init__.py" in output and "BROKEN" in output
    assert "collected" not in output  # pytest never ran
