"""`adaprune worker`: one Celery worker process with its metrics endpoint and lease reaper."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Sequence

from core.spec import PRUNE_TASK
from workers import tasks
from workers.app import app, configure
from workers.broker import BrokerView
from workers.drain import Drain, DrainingPool, install_signal_handlers
from workers.lease import Reaper
from workers.metrics import WorkerMetrics
from workers.runner import JobRunner
from workers.settings import WorkerSettings

log = logging.getLogger(__name__)


def run_worker(
    *, queues: Sequence[str] | None = None, log_level: str = "INFO", quiet: bool = False
) -> int:
    """Consume `queues` (default: the served queues, `SharedSettings.queues`) until told to stop.

    One job runs at a time, in this process (solo pool: no fork, so CUDA is only ever
    initialised here). SIGTERM, SIGINT and SIGQUIT drain (`workers.drain`): the running job
    goes back to the queue and resumes from its checkpoint on the next worker.

    Args:
        queues: queue names to consume.
        log_level: Python logging level name.
        quiet: leave out Celery's start-up banner.

    Returns:
        The Celery worker's exit code; 2 when the metrics port is taken (one line on stderr
        names it and the variable that changes it).
    """
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = WorkerSettings()
    metrics = WorkerMetrics()
    try:
        # First: a worker that cannot be scraped should say so before it takes any job.
        port = metrics.serve(settings.metrics_port, host=settings.metrics_host)
    except OSError as error:
        print(
            f"adaprune worker: metrics port {settings.metrics_port} is not available "
            f"({error.strerror or error}); set ADAPRUNE_METRICS_PORT to a free port, "
            "or to 0 to turn the metrics endpoint off",
            file=sys.stderr,
        )
        return 2
    configure(settings)
    runner = JobRunner.from_settings(settings, metrics=metrics)
    tasks.install_runner(runner)

    def send(job_id: str, queue: str) -> None:
        app.send_task(PRUNE_TASK, args=[job_id], queue=queue)

    runner.send = send
    drain = Drain()
    runner.drain = drain
    DrainingPool.drain = drain

    broker = BrokerView(settings.redis_url)
    reaper = Reaper(
        runner.store,
        send=send,
        interval_s=settings.heartbeat_s,
        stale_after_s=settings.stale_after_s,
        broker=broker,
    )
    reaper.start()
    log.info("worker %s: metrics on port %s, lease owner %s", os.getpid(), port, runner.owner)

    class DrainingWorker(app.Worker):  # type: ignore[misc]
        def install_platform_tweaks(self, worker: object) -> None:
            super().install_platform_tweaks(worker)
            # After Celery's own handlers, which these replace (see workers.drain).
            install_signal_handlers(drain, grace_s=settings.drain_grace_s, on_stop=_stop_consuming)

    worker = DrainingWorker(
        hostname=f"adaprune-{os.getpid()}@{socket.gethostname()}",
        queues=list(queues or settings.queues),
        pool=DrainingPool,
        concurrency=1,
        loglevel=log_level.upper(),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        quiet=quiet,
    )
    try:
        worker.start()
    finally:
        reaper.stop()
        broker.close()
        runner.store.engine.dispose()
    return int(worker.exitcode or 0)


def _stop_consuming() -> None:
    """Celery's warm shutdown: no new message, exit once the running task has returned."""
    from celery.worker import state

    state.should_stop = 0
