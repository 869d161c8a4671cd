"""Background threads of a worker: the job heartbeat and the stale-lease reaper."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from service.store import JobStore
from workers.broker import BrokerView
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
    """Every `interval_s`, requeues jobs whose worker died and re-sends jobs the broker lost.

    A worker that died (SIGKILL, OOM, lost node) leaves its job `running` with a heartbeat
    that stops moving; any live worker's reaper puts it back to `queued` and sends its id again,
    so it resumes from its last checkpoint without waiting for the broker's visibility timeout.

    While the database is down no heartbeat can be written, so a lease only counts as stale
    once the reaper has seen the database answer for `stale_after_s` in a row: a short outage
    never makes healthy jobs change hands.

    With `broker` given, a queued job older than `stale_after_s` whose id is neither waiting in
    its queue nor delivered-unacknowledged, in two sweeps in a row, is sent again (a Redis
    restart without persistence loses both). A duplicate message is harmless: the claim is
    atomic and a final or live-leased job makes it a no-op.
    """

    def __init__(
        self,
        store: JobStore,
        *,
        send: Callable[[str, str], None],
        interval_s: float,
        stale_after_s: float,
        broker: BrokerView | None = None,
    ) -> None:
        if interval_s <= 0 or stale_after_s <= 0:
            raise ValueError(f"interval {interval_s} and staleness {stale_after_s} must be > 0")
        self.store = store
        self.send = send
        self.interval_s = interval_s
        self.stale_after_s = stale_after_s
        self.broker = broker
        self._missing: set[str] = set()
        # A worker that just started has seen no outage: its first sweep may requeue at once.
        self._database_up_since: float | None = time.monotonic() - stale_after_s
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

    def recover_lost(self) -> list[str]:
        """Re-send the queued jobs the broker no longer holds; returns their ids.

        A job is re-sent when it was found missing in this sweep and the one before (a message
        is briefly in neither place while a worker moves it from the queue to `unacked`).
        """
        if self.broker is None:
            return []
        queued = self.store.queued_before(age_s=self.stale_after_s)
        if not queued:
            self._missing = set()
            return []
        # Only waiting messages count. A queued job's message that sits in `unacked` across two
        # sweeps was delivered to a worker that never claimed the job: one killed outright (its
        # delivery comes back only after the visibility timeout, an hour) or one whose re-send
        # failed while the broker was down. Each worker holds one message at a time (prefetch 1,
        # late acks), so a live worker holding it would have claimed the job by now; a duplicate
        # message is harmless, since only one claim of a job can win.
        present = self.broker.job_ids({queue for _, queue in queued}, unacked=False)
        missing = {job_id for job_id, _ in queued if job_id not in present}
        resent: list[str] = []
        for job_id, queue in queued:
            if job_id not in missing or job_id not in self._missing:
                continue
            if not self.broker.claim_resend(job_id, ttl_s=2 * self.interval_s):
                continue
            log.warning("job %s: missing from broker queue %s; sent again", job_id, queue)
            self.send(job_id, queue)
            resent.append(job_id)
        self._missing = missing - set(resent)
        return resent

    def tick(self) -> None:
        """One round: requeue stale leases (once the database is trusted again), then recover."""
        try:
            self.store.max_heartbeat_age_s()
        except INFRA_ERRORS:
            self._database_up_since = None
            raise
        now = time.monotonic()
        if self._database_up_since is None:
            self._database_up_since = now
        if now - self._database_up_since >= self.stale_after_s:
            self.sweep()
        self.recover_lost()

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval_s):
            try:
                self.tick()
            except Exception as error:  # the reaper must outlive any one failed sweep
                log.warning("lease sweep failed: %s", error)
