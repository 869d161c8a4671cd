"""PostgreSQL stops for a few seconds under load: 503s in bounded time, then every job ends."""

from __future__ import annotations

from tests.faults.harness import Deployment, PostgresCluster
from tests.faults.scenarios import database_outage


def test_database_outage_answers_503_quickly_and_jobs_still_finish(
    pg_deployment: Deployment, postgres: PostgresCluster
) -> None:
    figures = database_outage(pg_deployment, postgres, jobs=3, down_s=4.0)

    assert figures.problems == []
    assert (figures.jobs, figures.lost, figures.run_twice) == (3, 0, 0)
    statuses = figures.values["status_counts"]
    assert set(statuses) == {503} and statuses[503] >= 4
    assert figures.values["slowest_answer_s"] < 6.0
    assert figures.values["api_recovery_s"] < 10.0
    assert figures.values["write_retries"] >= 1
    assert figures.values["takeovers"] == 0
