"""A submission burst against the live API: quotas refuse with 429, nothing is lost or doubled."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.live import deployment
from bench.load import QUOTA, TENANTS, burst
from tests.security.conftest import redis_or_skip
from tests.support.redis_url import redis_test_url

REDIS_URL = redis_test_url(11)


@pytest.mark.parametrize("requests", [QUOTA * TENANTS + 100])
def test_burst_answers_201_or_429_and_every_accepted_job_is_stored_queued_once_and_ends(
    tmp_path: Path, requests: int
) -> None:
    redis_or_skip()
    with deployment(tmp_path, redis_url=REDIS_URL) as deploy:
        deploy.start_api()
        figures = burst(deploy, requests=requests)
    statuses = figures["burst"].statuses
    assert statuses == {201: QUOTA * TENANTS, 429: 100}, statuses
    failed = [name for name, holds in figures["checks"].items() if not holds]
    assert not failed, failed
    assert figures["messages"] == QUOTA * TENANTS
    assert figures["states"] == {"cancelled": QUOTA * TENANTS}
