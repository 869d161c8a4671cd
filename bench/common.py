"""Shared pieces of the benchmark scripts: machine description and docs/benchmarks.md sections."""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks.md"
HEADER = (
    "# Benchmarks\n\n"
    "Every figure below was measured by a script under `bench/`, which rewrites its own section.\n"
    "Machines here are shared and noisy: compare ratios measured in the same run, not absolute\n"
    "times across sections.\n"
)


def machine() -> str:
    """One line: CPU model, cores, memory, Python, torch."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import torch

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}{gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
    )


def command() -> str:
    """The command line, with the script shown relative to the repository."""
    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(ROOT)) if script.is_relative_to(ROOT) else sys.argv[0]
    return " ".join(["python", shown, *[a if " " not in a else repr(a) for a in sys.argv[1:]]])


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def source_digest(*folders: str) -> str:
    """A short digest of the Python sources under `folders` (relative to the repository): a
    cache of results is valid only for the code that produced them."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(path.relative_to(ROOT).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def write_section(
    name: str, body: str, *, path: Path = BENCHMARKS, stamp_note: str | None = None
) -> None:
    """Replace (or append) section `name` of docs/benchmarks.md, stamped with how it was made.

    `stamp_note` replaces the machine in the stamp when the figures were measured elsewhere and
    the body already names where (bench/gpu.py --from-json).
    """
    where = stamp_note if stamp_note is not None else f"machine: {machine()}"
    stamp = (
        f"_Command: `{command()}` · {where} · date: "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · commit {commit()}_\n\n"
    )
    block = f"<!-- {name}:start -->\n{body.rstrip()}\n\n{stamp}<!-- {name}:end -->"
    text = path.read_text() if path.exists() else HEADER
    pattern = re.compile(
        rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->", re.S
    )
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else f"{text.rstrip()}\n\n{block}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def mean_std(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, var**0.5
