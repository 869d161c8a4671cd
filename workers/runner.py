"""The glue between a queued job id and the engine: lease, heartbeat, resume, record, export.

`JobRunner.run(job_id)` is everything the Celery task does. The results store decides who runs a
job (the lease), the engine (`core.job.run_job`) does the work, and this module moves progress
and files between them. torch is imported only when a job actually runs.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from core.contract.errors import ErrorCode
from core.contract.jsonsafe import json_safe
from core.contract.records import JobResult
from core.contract.specfile import describe_validation
from core.errors import PruneCancelled, PruningError
from core.spec import JobSpec
from service.policy import DataPolicy, check_policy
from service.storage import ArtifactStorage, job_prefix, storage_from_url
from service.store import Claim, JobStore
from workers.checkpoints import CheckpointMirror
from workers.drain import Drain
from workers.engine import EngineCall, EngineHooks, artifact_files, run_in_child, run_in_process
from workers.errors import INFRA_ERRORS, StorageUnavailable, disk_error, infra_code, one_line
from workers.fairness import claim_fairly
from workers.handback import REQUEUED, SKIPPED, HandBack, newer_spec, store_write
from workers.journal import JobJournal
from workers.lease import Heartbeat
from workers.metrics import WorkerMetrics
from workers.progress import Progress
from workers.publish import EngineOutput, publish_artifact
from workers.settings import WorkerSettings
from workers.sources import SourceFetcher, SourceRefused

log = logging.getLogger(__name__)
# What run() catches: an OSError counts when it is a local disk failure (disk_error).
INFRA_OR_DISK_ERRORS: tuple[type[Exception], ...] = (*INFRA_ERRORS, OSError)
DEFERRED = "deferred"


def lease_owner() -> str:
    """This process's lease identity: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _upload_checkpoint(mirror: CheckpointMirror, drain: Drain, step_dir: Path) -> None:
    mirror.upload(step_dir)
    drain.checkpointed()  # a drained job stops here, losing nothing


def free_accelerator_memory() -> None:
    """Drop unreferenced tensors and return cached CUDA blocks to the driver."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class JobRunner(HandBack):
    """Runs queued jobs for one worker process."""

    def __init__(
        self,
        *,
        settings: WorkerSettings,
        store: JobStore,
        storage: ArtifactStorage,
        metrics: WorkerMetrics,
        owner: str | None = None,
        send: Callable[[str, str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.storage = storage
        self.metrics = metrics
        self.owner = owner or lease_owner()
        # Sends a job id to a queue; without it a released job is re-sent by a reaper's
        # lost-message recovery instead.
        self.send = send
        # Set by a stop signal (workers.drain): the running job is handed back to the queue.
        self.drain = Drain()

    @classmethod
    def from_settings(cls, settings: WorkerSettings, *, metrics: WorkerMetrics) -> JobRunner:
        """A runner connected to the database and storage that `settings` name."""
        return cls(
            settings=settings,
            store=JobStore.from_url(settings.database_url),
            storage=storage_from_url(settings.artifact_url),
            metrics=metrics,
        )

    def run(self, job_id: str, *, last_try: bool = True) -> str:
        """Claim and run the job `job_id`, unless another worker holds it or it is final.

        Args:
            job_id: the id carried by the queue message; the job run may be another queued one
                (`workers.fairness`: the message is spent on the least-served tenant's job).
            last_try: when an infrastructure error happens, fail the job (True) or raise it so
                that the task is retried (False).

        Returns:
            The outcome written ("succeeded", "failed", "cancelled"), "skipped" when the job
            was not taken, or "lost" when another worker took the lease over mid-run.

        Raises:
            The errors in INFRA_ERRORS, when `last_try` is False.
        """
        fair = claim_fairly(
            self.store,
            job_id,
            owner=self.owner,
            stale_after_s=self.settings.stale_after_s,
            max_attempts=self.settings.max_attempts,
            max_running_per_tenant=self.settings.tenant_max_running_jobs,
        )
        if fair.deferred and fair.queue is not None:
            return self._defer(job_id, fair.queue)
        claim = fair.claim
        if claim is None:
            log.info("job %s: not taken (final, leased elsewhere or out of attempts)", job_id)
            return SKIPPED
        job_id = claim.job_id  # the fair choice may be another job than the message named
        if not claim.cancel_requested and newer_spec(claim.spec):
            return self._requeue(claim)
        if self.drain.requested and not claim.cancel_requested:
            return self._hand_back(claim, reason="its worker is stopping", counted=False) or SKIPPED
        log.info("job %s: attempt %d on %s", job_id, claim.attempt, self.owner)
        # The next claim would exceed the cap: fail with the real error now, not a bare
        # "attempts exhausted" later.
        last_try = last_try or claim.attempt >= self.settings.max_attempts
        started = time.monotonic()
        outcome: str | None = None
        try:
            self._observe_start(claim)
            with Heartbeat(
                self.store,
                job_id=job_id,
                owner=self.owner,
                interval_s=self.settings.heartbeat_s,
                metrics=self.metrics,
                cancel_requested=claim.cancel_requested,
            ) as heartbeat:
                outcome = self._run_claimed(claim, heartbeat)
        except INFRA_OR_DISK_ERRORS as error:
            infra = disk_error(error) or error
            if not isinstance(infra, INFRA_ERRORS):
                raise
            log.warning("job %s: infrastructure error: %s", job_id, infra)
            if isinstance(infra, StorageUnavailable) and not last_try:
                # Another worker, or this one a little later, may find the storage working.
                reason = f"storage_unavailable: {one_line(infra)}"
                pause = min(60.0, self.settings.heartbeat_s * 2 ** (claim.attempt - 1))
                outcome = self._hand_back(claim, reason=reason, counted=True, pause_s=pause)
            elif not last_try:
                JobJournal(self.store, owner=self.owner, claim=claim).retry(infra)
                raise
            else:
                outcome = self._fail_quietly(claim, code=infra_code(infra), message=one_line(infra))
        finally:
            final = outcome if outcome != REQUEUED else None
            self.metrics.job_ended(outcome=final, seconds=time.monotonic() - started)
            free_accelerator_memory()
        return outcome or "lost"

    def _defer(self, job_id: str, queue: str) -> str:
        """Every tenant waiting on `queue` is at its cap: send the message again after a pause."""
        log.info("job %s: every waiting tenant is at its running-job cap; waiting", job_id)
        time.sleep(self.settings.heartbeat_s)
        if self.send is not None:
            self.send(job_id, queue)
        return DEFERRED

    def _observe_start(self, claim: Claim) -> None:
        self.metrics.job_started()
        if claim.resumed:
            self.metrics.retries.inc()
            return
        try:
            job = self.store.load_job(claim.job_id)
        except INFRA_ERRORS:
            return  # only a metric is lost
        if job is not None and job.started_at is not None:
            self.metrics.queue_wait.observe(
                max(0.0, (job.started_at - job.created_at).total_seconds())
            )

    def _finish(self, claim: Claim, *, state: str, **fields: Any) -> str | None:
        written = store_write(
            f"job {claim.job_id}: finish",
            lambda: self.store.finish(claim.job_id, owner=self.owner, state=state, **fields),
        )
        if not written:
            log.warning("job %s: lease lost before it could be marked %s", claim.job_id, state)
            return None
        log.info("job %s: finished %s on attempt %d", claim.job_id, state, claim.attempt)
        return state

    def _fail(self, claim: Claim, *, code: ErrorCode, message: str) -> str | None:
        log.info("job %s: failed: %s: %s", claim.job_id, code, message)
        return self._finish(claim, state="failed", error_code=code, error_message=message)

    def _fail_quietly(self, claim: Claim, *, code: ErrorCode, message: str) -> str | None:
        try:
            return self._fail(claim, code=code, message=message)
        except INFRA_ERRORS as error:
            # The database is down too: the heartbeat has stopped, so a reaper requeues the job
            # once it is stale and the attempt cap ends it.
            log.error("job %s: could not record failure %s: %s", claim.job_id, code, error)
            return None

    def _run_claimed(self, claim: Claim, heartbeat: Heartbeat) -> str | None:
        mirror = CheckpointMirror(
            self.storage, prefix=f"{job_prefix(claim.tenant, claim.job_id)}checkpoints/"
        )
        if heartbeat.cancel_requested:
            return self._cancelled(claim, mirror)
        try:
            spec = JobSpec.model_validate(claim.spec)
        except ValidationError as error:
            return self._fail(
                claim, code="spec_invalid", message=one_line(describe_validation(error, limit=1))
            )
        data = DataPolicy.of(self.settings, tenant=claim.tenant)
        problems = check_policy(
            spec,
            allowed_entrypoints=self.settings.allowed_entrypoints,
            data=data,
            owns_job=functools.partial(self._owns_job, claim),
        )
        if problems:
            message = "; ".join(f"{p.field}: {p.message}" for p in problems)
            return self._fail(claim, code="policy_violation", message=one_line(message))
        self.settings.work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=f"{claim.job_id}-", dir=self.settings.work_root
        ) as tmp:
            fetcher = SourceFetcher(claim, data, self.store, self.storage, Path(tmp) / "sources")
            try:
                sources = fetcher.fetch_all(spec)
            except SourceRefused as error:
                return self._fail(claim, code=error.code, message=one_line(error))
            return self._run_spec(
                claim, spec, heartbeat=heartbeat, mirror=mirror, work=Path(tmp), sources=sources
            )

    def _owns_job(self, claim: Claim, job_id: str) -> bool:
        job = self.store.load_job(job_id)
        return job is not None and job.tenant_id == claim.tenant_id

    def _run_spec(
        self,
        claim: Claim,
        spec: JobSpec,
        *,
        heartbeat: Heartbeat,
        mirror: CheckpointMirror,
        work: Path,
        sources: dict[str, Path],
    ) -> str | None:
        resume = False
        journal = JobJournal(self.store, owner=self.owner, claim=claim)
        if claim.resumed:
            step = mirror.download(work / "checkpoints")
            # Steps after the checkpoint are replayed by this attempt; steps up to it stay.
            store_write(
                f"job {claim.job_id}: truncate steps",
                lambda: self.store.truncate_steps(
                    claim.job_id, after_step=-1 if step is None else step
                ),
            )
            resume = step is not None
            log.info("job %s: resuming from step %s", claim.job_id, step)
            journal.resumed(step)
        try:
            output = self._engine(
                claim,
                spec,
                heartbeat=heartbeat,
                mirror=mirror,
                work=work,
                resume=resume,
                journal=journal,
                sources=sources,
            )
        except PruneCancelled:
            if heartbeat.lost:
                return None
            if self.drain.requested and not heartbeat.cancel_requested:
                reason = f"its worker is stopping ({self.drain.reason})"
                handed = self._hand_back(claim, reason=reason, counted=False)
                if handed is not None or not self._cancel_asked(claim):
                    return handed  # None: the lease goes stale and a reaper requeues the job
            return self._cancelled(claim, mirror)
        except PruningError as error:
            return self._fail(claim, code=error.code, message=one_line(error))
        except INFRA_ERRORS:
            raise
        except Exception as error:  # a bug or an unexpected library error: fail, never hang
            disk = disk_error(error)
            if disk is not None:
                raise disk from error
            log.exception("job %s: unexpected error", claim.job_id)
            return self._fail(
                claim, code="internal_error", message=one_line(f"{type(error).__name__}: {error}")
            )
        if heartbeat.lost or not store_write(f"job {claim.job_id}: heartbeat", heartbeat.beat):
            return None
        if heartbeat.cancel_requested:  # asked during export, after the engine's last check
            return self._cancelled(claim, mirror)
        if not self._publish(claim, output):
            heartbeat.lost = True
            return None
        outcome = self._finish(
            claim, state="succeeded", result=output.result.model_dump(mode="json")
        )
        if outcome is not None:
            mirror.delete()
        return outcome

    def _cancel_asked(self, claim: Claim) -> bool:
        job = store_write(f"job {claim.job_id}: load", lambda: self.store.load_job(claim.job_id))
        return job is not None and job.cancel_requested

    def _cancelled(self, claim: Claim, mirror: CheckpointMirror) -> str | None:
        outcome = self._finish(
            claim, state="cancelled", error_code="cancelled", error_message="cancelled by request"
        )
        if outcome is not None:
            mirror.delete()
        return outcome

    def _engine(
        self,
        claim: Claim,
        spec: JobSpec,
        *,
        heartbeat: Heartbeat,
        mirror: CheckpointMirror,
        work: Path,
        resume: bool,
        journal: JobJournal,
        sources: dict[str, Path],
    ) -> EngineOutput:
        journal.start(metric=spec.task.metric, max_drop=spec.prune.max_metric_drop)

        progress = Progress(
            store=self.store,
            metrics=self.metrics,
            owner=self.owner,
            claim=claim,
            heartbeat=heartbeat,
            journal=journal,
        )
        out_dir = work / "artifact"
        call = EngineCall(
            spec=spec,
            out_dir=out_dir,
            work_dir=work,
            device=self.settings.device,
            allowed_entrypoints=tuple(self.settings.allowed_entrypoints),
            resume=resume,
            limits=self.settings.job_limits,
            threads=self.settings.torch_threads,
            sources=sources,
        )
        hooks = EngineHooks(
            on_step=progress.step,
            on_phase=progress.phase,
            on_checkpoint=functools.partial(_upload_checkpoint, mirror, self.drain),
            on_classes=progress.classes,
            should_stop=lambda: heartbeat.should_stop() or self.drain.due(),
        )
        limit = self.settings.job_memory_limit_bytes
        if limit > 0:
            result = run_in_child(call, hooks, memory_limit_bytes=limit)
        else:
            result = run_in_process(call, hooks)
        files = artifact_files(out_dir)
        free_accelerator_memory()
        return EngineOutput(
            result=JobResult.model_validate(json_safe(result)), artifact_dir=out_dir, files=files
        )

    def _publish(self, claim: Claim, output: EngineOutput) -> bool:
        return publish_artifact(
            claim, output, storage=self.storage, store=self.store, owner=self.owner
        )
