"""Job events: the kinds and levels of the lines a job's log holds, for every reader."""

from __future__ import annotations

from typing import Literal, get_args

EventKind = Literal[
    "claimed",  # a worker took the job: which worker, which attempt
    "resumed",  # a later attempt continues from a checkpoint
    "phase",  # the running job moved to another phase
    "step",  # one pruning step and the controller's decision, in words
    "warning",  # something the user should know (the result may not mean much)
    "retry",  # an attempt stopped on an infrastructure error and will be retried
    "requeued",  # the job went back to the queue (a stale lease, or a worker too old for it)
    "cancel",  # the user asked the job to stop
    "finished",  # the final outcome
]
EventLevel = Literal["info", "warning", "error"]

EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)
EVENT_LEVELS: tuple[EventLevel, ...] = get_args(EventLevel)
