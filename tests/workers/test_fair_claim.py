"""The claim a message makes: the fair choice first, the named job after, never a wasted message."""

from __future__ import annotations

import secrets
from pathlib import Path

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.store import JobStore
from tests.support.deployment import tiny_spec
from workers.fairness import FairClaim, claim_fairly

QUEUE = "gpu"


def _store(tmp_path: Path) -> tuple[JobStore, int, int]:
    url = f"sqlite:///{tmp_path / 'fair.db'}"
    upgrade(url)
    store = JobStore.from_url(url)
    ids = []
    for name in ("alpha", "beta"):
        with store.tx() as session:
            create_key(session, name)
        with store.tx() as session:
            ids.append(get_or_create_tenant(session, name).id)
    return store, ids[0], ids[1]


def _claim(store: JobStore, job_id: str, cap: int = 0) -> FairClaim:
    """A claim by a new worker each time (a worker's own lease would be taken over)."""
    owner = f"worker-{secrets.token_hex(4)}"
    return claim_fairly(
        store, job_id, owner=owner, stale_after_s=60, max_attempts=3, max_running_per_tenant=cap
    )


def test_a_message_runs_the_least_served_tenants_job_and_a_spent_one_runs_the_next(
    tmp_path: Path,
) -> None:
    store, alpha, beta = _store(tmp_path)
    a1, a2 = (store.create_job(tenant_id=alpha, spec=tiny_spec(), queue=QUEUE).job.id for _ in "12")
    b1 = store.create_job(tenant_id=beta, spec=tiny_spec(), queue=QUEUE).job.id
    first = _claim(store, a1).claim
    assert first is not None and first.job_id == a1
    second = _claim(store, a2).claim  # a2's message, but beta has nothing running
    assert second is not None and second.job_id == b1
    third = _claim(store, b1).claim  # b1 already runs: its message is spent on a2
    assert third is not None and third.job_id == a2
    assert _claim(store, a1).claim is None  # nothing left: a duplicate is a no-op
    store.engine.dispose()


def test_a_message_whose_tenants_are_all_at_their_cap_is_deferred(tmp_path: Path) -> None:
    store, alpha, _ = _store(tmp_path)
    a1, a2 = (store.create_job(tenant_id=alpha, spec=tiny_spec(), queue=QUEUE).job.id for _ in "12")
    assert _claim(store, a1, cap=1).claim is not None
    deferred = _claim(store, a2, cap=1)
    assert (deferred.claim, deferred.deferred, deferred.queue) == (None, True, QUEUE)
    store.engine.dispose()
