"""Loaded by the engine's forkserver (it is the first of `workers.engine.PRELOAD`): the
forkserver exits at once when it has nothing left to serve.

CPython's forkserver ends by raising SystemExit once its worker and every child it forked have
gone. The interpreter would then tear down torch and the other preloaded modules, which takes
8-10 s on a loaded 2-core machine (0.4 s without the tear-down), so a stopped or killed worker
would leave a process behind for that long. The forkserver owns no files and no connections
that need closing, so it skips the tear-down. Imported anywhere else, this module does nothing;
the forkserver's children never run it either (they leave through `os._exit` already).
"""

from __future__ import annotations

import atexit
import multiprocessing.forkserver
import os
import sys


def imported_by_forkserver() -> bool:
    """Whether this import runs inside `multiprocessing.forkserver.main` (its preload)."""
    server = multiprocessing.forkserver.main.__code__
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is server:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _exit_now(pid: int) -> None:
    if os.getpid() == pid:
        os._exit(0)


if imported_by_forkserver():
    atexit.register(_exit_now, os.getpid())
