"""The results store that both the API and the workers use."""

from __future__ import annotations

from core.contract.events import EVENT_KINDS
from service.store.artifacts import ArtifactOps, ArtifactRow, check_artifact_name
from service.store.events import EventOps
from service.store.fair import FairOps
from service.store.handback import HandbackOps
from service.store.jobs import Created, JobPage, JobQueries, request_hash
from service.store.leases import ATTEMPTS_EXHAUSTED, Claim, LeaseOps, LeaseStatus
from service.store.steps import StepOps


class JobStore(JobQueries, LeaseOps, HandbackOps, StepOps, ArtifactOps, EventOps, FairOps):
    """Every store operation; build it with `JobStore.from_url(url)` or from a sessionmaker."""


__all__ = [
    "ATTEMPTS_EXHAUSTED",
    "EVENT_KINDS",
    "ArtifactRow",
    "Claim",
    "Created",
    "JobPage",
    "JobStore",
    "LeaseStatus",
    "check_artifact_name",
    "request_hash",
]
