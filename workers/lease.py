"""Background threads of a worker: the job heartbeat and the stale-lease reaper."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from service.store import JobStore
from workers.errors import INFRA_ERRORS
from workers.metrics import WorkerMetrics

log = logging.getLogger(__name__)


class Heartbeat:
    """Renews a job's lease every `interval_s` and notices cancel requests and lost leases.

    `should_stop()` is what the engine polls between batches: it turns True when the job was
    asked to cancel or when another worker holds the lease now.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        job_id: str,
        owner: str,
        interval_s: float,
        metrics: WorkerMetrics,
        cancel_requested: bool = False,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"heartbeat interval {interval_s} must be positive")
        self.store = store
        self.job_id = job_id
        self.owner = owner
        self.interval_s = interval_s
        self.metrics = metrics
        self.cancel_requested = cancel_requested
        self.lost = False
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 5)

    def should_stop(self) -> bool:
        """True once the job must stop: cancel requested or lease lost."""
        return self.cancel_requested or self.lost

    def beat(self) -> bool:
        """Renew the lease now; returns whether this worker still owns the job."""
        status = self.store.heartbeat(self.job_id, owner=self.owner)
        self.metrics.heartbeat_beat()
        if status.cancel_requested:
            self.cancel_requested = True
        if not status.owned:
            self.lost = True
        return status.owned

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                if not self.beat():
                    log.warning("job %s: lease lost to another worker; stopping", self.job_id)
                    return
            except INFRA_ERRORS as error:
                # The age gauge grows; after three intervals another worker may take over.
                log.warning("job %s: heartbeat failed: %s", self.job_id, error)


class Reaper:
    """Every `interval_s`, requeues running jobs whose heartbeat is stale and re-sends them.

    A worker that died (SIGKILL, OOM, lost node) leaves its job `running` with a heartbeat
    that stops moving; any live worker's reaper puts it back to `queued` and sends its id again,
    so it resumes from its last checkpoint without waiting for the broker's visibility timeout.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        send: Callable[[str, str], None],
        interval_s: float,
        stale_after_s: float,
    ) -> None:
        if interval_s <= 0 or stale_after_s <= 0:
            raise ValueError(f"interval {interval_s} and staleness {stale_after_s} must be > 0")
        self.store = store
        self.send = send
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-reaper", daemon=True)

    def start(self) -> None:
        """Start the background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (waits for the current sweep)."""
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 5)

    def sweep(self) -> list[str]:
        """Requeue and re-send the stale jobs once; returns their ids."""
        requeued = self.store.requeue_stale(stale_after_s=self.stale_after_s)
        for job_id in requeued:
            job = self.store.load_job(job_id)
            if job is not None:
                log.info("job %s: stale lease, sent to queue %s again", job_id, job.queue)
                self.send(job_id, job.queue)
        return requeued

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.sweep()
            except Exception as error:  # the reaper must outlive any one failed sweep
                log.warning("stale-lease sweep failed: %s", error)
