"""The processes `adaprune up` starts, watched: a child that dies is named, with its log's
last line, so a failed start ends `up` (and the demo) at once instead of leaving it waiting.
After the start, `cli.supervisor` restarts a child that dies."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cli.errors import UserError

TAIL_BYTES = 4096
STOP_GRACE_S = 5.0


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


def describe_exit(child: Child) -> str:
    """One line: the child's name, exit status and last log line, and where its log is."""
    line = last_line(child.log)
    said = f": {line}" if line else ""
    return f"the {child.name} exited with status {child.process.poll()}{said} (log: {child.log})"


def check_children(children: list[Child]) -> None:
    """Raise UserError naming the first child that exited, its status and its last log line.

    Used while `up` starts: a child that dies then cannot start at all, and `up` exits.
    """
    for child in children:
        if child.process.poll() is not None:
            raise UserError(describe_exit(child))


def stop_process(
    process: subprocess.Popen[bytes], *, signals: tuple[signal.Signals, ...]
) -> int | None:
    """Send each signal in turn, waiting STOP_GRACE_S after each, until the process exits."""
    for signum in signals:
        if process.poll() is not None:
            break
        process.send_signal(signum)
        try:
            process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            continue
    return process.poll()


def stop_together(
    processes: list[subprocess.Popen[bytes]], *, signals: tuple[signal.Signals, ...]
) -> None:
    """`stop_process` for several processes at once: each signal goes to every one still
    running, then all get STOP_GRACE_S together."""
    for signum in signals:
        alive = [process for process in processes if process.poll() is None]
        if not alive:
            return
        for process in alive:
            process.send_signal(signum)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in alive:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue


def stop_each(stops: list[Callable[[], object]]) -> None:
    """Call every function in `stops` in order; one that raises does not skip the rest.

    Raises:
        The error of a stop that failed (after all the others ran).
    """
    if not stops:
        return
    try:
        stops[0]()
    finally:
        stop_each(stops[1:])
