"""The processes `adaprune up` starts, watched: a child that dies is named, with its log's
last line, so a failed start ends `up` (and the demo) at once instead of leaving it waiting."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError

TAIL_BYTES = 4096


@dataclass(frozen=True)
class Child:
    """A service process of `up`: its name for messages, the process, and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path


def last_line(path: Path) -> str:
    """The last non-empty line of a log file ("" when it has none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read().decode(errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def check_children(children: list[Child]) -> None:
    """Raise UserError naming the first child that exited, its status and its last log line."""
    for child in children:
        code = child.process.poll()
        if code is None:
            continue
        line = last_line(child.log)
        said = f": {line}" if line else ""
        raise UserError(f"the {child.name} exited with status {code}{said} (log: {child.log})")


def supervise(children: list[Child], *, poll_s: float = 0.5) -> int:
    """Block until a child dies (printed as one line; returns 1) or a signal stops us."""
    while True:
        try:
            check_children(children)
        except UserError as error:
            print(f"adaprune: error: {error}; stopping", file=sys.stderr)
            return 1
        time.sleep(poll_s)
