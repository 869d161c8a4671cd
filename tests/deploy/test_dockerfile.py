"""Static checks of the Dockerfile (no Docker engine runs here): stages, targets, install
order, and the torch-free API image installing the package's `[api]` extra."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

STAGE = re.compile(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE | re.MULTILINE)


def stages(root: Path) -> dict[str, tuple[str, str]]:
    """Stage name -> (base, body text up to the next FROM), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (root / "Dockerfile").read_text())
    matches = list(STAGE.finditer(text))
    result: dict[str, tuple[str, str]] = {}
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        result[match[2]] = (match[1], text[match.end() : end])
    return result


def instruction(body: str, name: str) -> str:
    found = re.findall(rf"^{name}\s+(.+)$", body, re.MULTILINE)
    assert found, name
    return str(found[-1])


def test_torch_variant_picks_the_worker_base(root: Path) -> None:
    text = (root / "Dockerfile").read_text()
    assert text.index("ARG TORCH_VARIANT=cpu") < text.index("FROM ")
    found = stages(root)
    assert found["worker"][0] == "torch-${TORCH_VARIANT}"
    assert "download.pytorch.org/whl/cpu" in found["torch-cpu"][1]
    assert "download.pytorch.org/whl/${TORCH_CUDA}" in found["torch-cuda"][1]


@pytest.mark.parametrize("target", ["api", "worker"])
def test_targets_run_adaprune_as_a_non_root_user(root: Path, target: str) -> None:
    body = stages(root)[target][1]
    user = instruction(body, "USER").split(":")[0]
    assert user not in {"root", "0"}
    assert json.loads(instruction(body, "ENTRYPOINT")) == ["adaprune"]
    assert json.loads(instruction(body, "CMD"))[0] == target
    assert "HEALTHCHECK" in body


def test_api_image_installs_no_torch(root: Path) -> None:
    found = stages(root)
    base, body = found["api"]
    assert base == "runtime"
    installs = " ".join(re.findall(r"pip install[^\n&]*", body))
    assert "torch" not in installs
    assert 'pip install "$(ls /wheels/adaprune-*.whl)[api]"' in body
    assert "find_spec('torch') is not None" in body
    assert "/healthz" in instruction(body, "HEALTHCHECK")


def test_worker_installs_torch_before_the_project(root: Path) -> None:
    found = stages(root)
    for variant in ("torch-cpu", "torch-cuda"):
        assert found[variant][0] == "runtime"
        assert "pip install --index-url" in found[variant][1]
    body = found["worker"][1]
    assert 'pip install "$(ls /wheels/adaprune-*.whl)[worker]"' in body
    assert "torch" not in " ".join(re.findall(r"pip install[^\n&]*", body))
    assert "adaprune-worker-probe" in instruction(body, "HEALTHCHECK")


def test_build_context_keeps_the_files_the_dockerfile_copies(root: Path) -> None:
    ignore = (root / ".dockerignore").read_text().splitlines()
    assert "deploy" in ignore
    for copied in re.findall(r"^COPY (deploy/\S+)", (root / "Dockerfile").read_text(), re.M):
        assert f"!{copied}" in ignore, copied
        assert (root / copied).is_file(), copied
