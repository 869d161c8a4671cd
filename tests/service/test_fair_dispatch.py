"""Fair choice of the next job between tenants, on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import update

from service.db.models import Job
from service.store import JobStore
from tests.service.conftest import NewTenant, TinySpec

QUEUE = "gpu"


def _submit(store: JobStore, tenant: int, spec: dict[str, object], count: int) -> list[str]:
    return [store.create_job(tenant_id=tenant, spec=spec, queue=QUEUE).job.id for _ in range(count)]


def _start(store: JobStore, job_id: str) -> None:
    claim = store.claim(job_id, owner="w", stale_after_s=60, max_attempts=3)
    assert claim is not None


def test_the_least_served_tenant_goes_first_whatever_the_message_named(
    store: JobStore, new_tenant: NewTenant, tiny_spec: TinySpec
) -> None:
    alpha, _ = new_tenant(store, "alpha")
    beta, _ = new_tenant(store, "beta")
    backlog = _submit(store, alpha, tiny_spec(), 3)
    (late,) = _submit(store, beta, tiny_spec(), 1)
    assert store.fair_pick(QUEUE) == (backlog[0], False)  # nobody served yet: the oldest
    _start(store, backlog[0])
    assert store.fair_pick(QUEUE) == (late, False)  # alpha runs one, beta none
    _start(store, late)
    with store.tx() as session:  # both finish; beta's start is the more recent
        session.execute(update(Job).values(state="succeeded", lease_owner=None))
        session.execute(update(Job).where(Job.id.in_(backlog[1:])).values(state="queued"))
    assert store.fair_pick(QUEUE) == (backlog[1], False)


def test_a_tenant_at_its_running_cap_waits_and_the_message_is_deferred(
    store: JobStore, new_tenant: NewTenant, tiny_spec: TinySpec
) -> None:
    alpha, _ = new_tenant(store, "alpha")
    first, second = _submit(store, alpha, tiny_spec(), 2)
    _start(store, first)
    assert store.fair_pick(QUEUE, max_running_per_tenant=1) == (None, True)
    assert store.fair_pick(QUEUE, max_running_per_tenant=2) == (second, False)
    assert store.fair_pick("other-queue") == (None, False)
    assert store.running_by_tenant() == {alpha: 1}
