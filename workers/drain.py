"""Stopping a worker without failing its job: every stop signal drains.

SIGTERM, SIGINT and SIGQUIT all do the same thing to a busy worker: no new job is taken, the
running job stops at a batch boundary and goes back to the queue (state `queued`, the attempt
taken back), and the next worker resumes it from its last checkpoint. They differ only in how
long the job may run first:

- SIGTERM and a first SIGINT: until the job writes its next checkpoint, at most
  ADAPRUNE_DRAIN_GRACE_S seconds (nothing since that checkpoint is lost);
- SIGQUIT, or any second signal: at the next batch (the job keeps its last checkpoint).

An idle worker just exits. Celery's own handlers are replaced because its cold shutdown asks
the solo pool to kill the running task, which it cannot do (the job would fail for good);
`DrainingPool` turns any such request from Celery into a drain as well.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from celery.concurrency.solo import TaskPool

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


class Drain:
    """A process-wide request to stop, set by a signal and read by the running job."""

    def __init__(self) -> None:
        # Reentrant: a signal handler runs on the main thread, possibly while that thread is
        # inside due(), and must not wait for itself.
        self._lock = threading.RLock()
        self.reason: str | None = None
        self._deadline: float | None = None
        self._checkpointed = False

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for (the worker takes no new job)."""
        return self.reason is not None

    def request(self, reason: str, *, grace_s: float) -> None:
        """Ask the running job to stop within `grace_s` seconds (sooner at a checkpoint).

        A later request can only shorten the wait, never lengthen it.
        """
        deadline = time.monotonic() + max(0.0, grace_s)
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline

    def checkpointed(self) -> None:
        """The running job stored a checkpoint: a drain asked for before now may stop at once."""
        with self._lock:
            if self.reason is not None:
                self._checkpointed = True

    def due(self) -> bool:
        """Whether the running job must stop now (polled between batches)."""
        with self._lock:
            if self.reason is None or self._deadline is None:
                return False
            return self._checkpointed or time.monotonic() >= self._deadline


def install_signal_handlers(drain: Drain, *, grace_s: float, on_stop: Callable[[], None]) -> None:
    """Make SIGTERM, SIGINT and SIGQUIT drain (see the module docstring).

    Args:
        drain: the process's drain request, shared with the runner.
        grace_s: how long SIGTERM and a first SIGINT let the job run to its next checkpoint.
        on_stop: called with no argument on every signal; it tells Celery to take no more
            messages and to stop once the running task has returned.
    """

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        again = drain.requested
        wait = 0.0 if again or signum == signal.SIGQUIT else grace_s
        drain.request(name, grace_s=wait)
        on_stop()
        # A signal handler must not block on the logging lock that the interrupted code may
        # hold; stderr is written directly, and only once per signal.
        when = "now" if wait == 0 else f"at its next checkpoint (at most {wait:g}s)"
        hint = "" if wait == 0 else "; send SIGQUIT to stop it now"
        if sys.__stderr__ is not None:
            sys.__stderr__.write(
                f"worker: {name}: draining; a running job stops {when} and goes back to the "
                f"queue{hint}\n"
            )

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle)


class DrainingPool(TaskPool):  # type: ignore[misc]
    """The solo pool, where Celery's request to kill the running task becomes a drain."""

    drain: Drain | None = None

    def terminate_job(self, pid: Any, signal: Any = None) -> None:
        """Stop the running job at its next batch; it goes back to the queue."""
        if DrainingPool.drain is not None:
            log.warning("the running task was asked to stop: draining it")
            DrainingPool.drain.request("terminate", grace_s=0.0)
