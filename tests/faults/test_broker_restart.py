"""Redis (the broker, persistence off) restarts while jobs are queued and running."""

from __future__ import annotations

import uuid

from service.queue import JobQueue
from tests.faults.harness import Deployment, RedisServer
from tests.faults.scenarios import broker_restart
from workers.broker import BrokerView


def test_broker_view_finds_the_job_id_of_a_queued_message(broker: RedisServer) -> None:
    job_id = str(uuid.uuid4())
    sender = JobQueue(broker.url)
    view = BrokerView(broker.url)
    try:
        sender.enqueue(job_id, "view-check")
        assert job_id in view.job_ids(["view-check"])
        assert job_id not in view.job_ids(["another-queue"])
    finally:
        broker.client().delete("view-check")
        sender.close()
        view.close()


def test_broker_restart_loses_no_job_and_runs_none_twice(
    deployment: Deployment, broker: RedisServer
) -> None:
    figures = broker_restart(deployment, broker, jobs=4)

    assert figures.problems == []
    assert figures.values["queued_at_restart"] >= 1
    assert (figures.jobs, figures.lost, figures.run_twice) == (4, 0, 0)
    # Messages that were waiting when Redis died can only come back through the reaper.
    assert figures.values["resent"] >= 1
