"""Retry a write in place while a backing service is briefly down.

A running job cannot wait for Celery's task-level retry without losing its progress since the
last checkpoint, so the runner retries its database writes (step rows, phase, heartbeat,
finish, artifact rows) and storage calls where they happen, with exponential backoff, for a
bounded time; what still fails after that is raised to the task as before.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE_RETRY_S = 120.0
STORAGE_TRIES = 3


def retry_for(
    what: str,
    call: Callable[[], T],
    *,
    errors: tuple[type[Exception], ...],
    budget_s: float = DATABASE_RETRY_S,
    tries: int | None = None,
    first_delay_s: float = 0.25,
    max_delay_s: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `call()` until it returns, retrying on `errors` with exponential backoff.

    Delays are first_delay_s * 2**k, capped at max_delay_s. It gives up (re-raising the last
    error) once `budget_s` seconds have passed or `tries` calls were made, whichever is first.

    Args:
        what: names the operation in the log.
        call: the operation; it must be safe to repeat (every store write is).
        errors: the exception types worth retrying.
        budget_s: total time allowed for the retries.
        tries: the most calls made (None: bounded by `budget_s` alone).
        first_delay_s: the first backoff delay.
        max_delay_s: the largest backoff delay.
        sleep: how to wait (a test can pass a fake clock).

    Returns:
        What `call()` returned.
    """
    if budget_s < 0 or first_delay_s <= 0 or max_delay_s < first_delay_s:
        raise ValueError(
            f"bad backoff: budget {budget_s}, first delay {first_delay_s}, max {max_delay_s}"
        )
    if tries is not None and tries < 1:
        raise ValueError(f"tries {tries} must be at least 1")
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    made = 0
    while True:
        made += 1
        try:
            return call()
        except errors as error:
            out_of_tries = tries is not None and made >= tries
            if out_of_tries or time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.2fs", what, _short(error), delay)
        sleep(delay)
        delay = min(max_delay_s, delay * 2)


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}"
