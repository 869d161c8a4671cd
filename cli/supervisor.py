"""`adaprune up` keeps its children running: one that dies is started again, with backoff.

A worker that is SIGKILLed or OOM-killed, the API, or the embedded Redis comes back on its own;
the stack stays up and the jobs go on (a dead worker's job is taken over by the lease reaper of
the restarted worker and resumes from its checkpoint). A child that exits with an error status
soon after its first start could not start at all, and one that keeps dying within STABLE_S
of each start is given up on after MAX_QUICK_DEATHS: `up` then exits non-zero naming it and
its last log line.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cli.children import Child, describe_exit
from cli.errors import UserError

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
# A child that lived this long before dying had started fine: its backoff starts over.
STABLE_S = 60.0
MAX_QUICK_DEATHS = 5


@dataclass
class Supervised:
    """A child and how to start it again; `process` is always the newest one started."""

    child: Child
    start: Callable[[], subprocess.Popen[bytes]]
    started_at: float = field(default_factory=time.monotonic)
    quick_deaths: int = 0
    restarts: int = 0
    due_at: float | None = None

    @property
    def name(self) -> str:
        return self.child.name

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.process


class Supervisor:
    """Restarts dead children with exponential backoff; see the module docstring."""

    def __init__(
        self, children: list[Supervised], *, say: Callable[[str], None] | None = None
    ) -> None:
        self.children = children
        self.say = say or (lambda line: print(f"adaprune: {line}", file=sys.stderr))

    def tick(self, now: float | None = None) -> None:
        """Notice dead children and start those whose backoff has passed.

        Raises:
            UserError: a child died MAX_QUICK_DEATHS times in a row soon after starting.
        """
        for entry in self.children:
            moment = time.monotonic() if now is None else now
            if entry.due_at is None:
                if entry.process.poll() is None:
                    continue
                self._schedule(entry, moment, describe_exit(entry.child))
            if entry.due_at is not None and moment >= entry.due_at:
                self._restart(entry)

    def _schedule(self, entry: Supervised, now: float, why: str) -> None:
        quick = now - entry.started_at < STABLE_S
        code = entry.process.poll()
        if quick and entry.restarts == 0 and code is not None and code > 0:
            # It failed by itself soon after `up` started it (a bad setting, a taken port):
            # starting it again would fail the same way.
            raise UserError(f"{why}; it could not start")
        entry.quick_deaths = entry.quick_deaths + 1 if quick else 1
        if entry.quick_deaths > MAX_QUICK_DEATHS:
            raise UserError(
                f"{why}; it died {entry.quick_deaths} times within {STABLE_S:.0f}s of starting, "
                "giving up"
            )
        delay = min(MAX_BACKOFF_S, FIRST_BACKOFF_S * 2 ** (entry.quick_deaths - 1))
        entry.due_at = now + delay
        self.say(f"{why}; starting it again in {delay:g}s")

    def _restart(self, entry: Supervised) -> None:
        entry.due_at = None
        entry.started_at = time.monotonic()
        try:
            process = entry.start()
        except Exception as error:  # counted like a quick death: backoff, then give up
            self._schedule(entry, time.monotonic(), f"the {entry.name} did not start: {error}")
            return
        entry.child = Child(entry.name, process, entry.child.log)
        entry.restarts += 1
        self.say(f"the {entry.name} is running again (restart {entry.restarts})")

    def run(self, *, poll_s: float = 0.5) -> int:
        """Supervise until a signal stops `up` (Shutdown) or a child is given up on (returns 1)."""
        while True:
            try:
                self.tick()
            except UserError as error:
                self.say(f"error: {error}; stopping")
                return 1
            time.sleep(poll_s)
