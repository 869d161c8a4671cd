"""Job states and running phases: the names the store, the worker and the API share."""

from __future__ import annotations

from typing import Literal, get_args

JobState = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
Phase = Literal["baseline", "scoring", "finetuning", "exporting"]

JOB_STATES: tuple[JobState, ...] = get_args(JobState)
ACTIVE_STATES: tuple[JobState, ...] = ("queued", "running", "cancelling")
LEASED_STATES: tuple[JobState, ...] = ("running", "cancelling")
FINAL_STATES: tuple[JobState, ...] = ("succeeded", "failed", "cancelled")
PHASES: tuple[Phase, ...] = get_args(Phase)
