"""The per-tenant active-job cap holds when submissions race each other."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from service.errors import QuotaExceeded
from service.store import JobStore


@pytest.mark.parametrize(("cap", "racers"), [(1, 6), (2, 8)])
def test_concurrent_submissions_accept_exactly_cap_jobs(
    store: JobStore, new_tenant: Any, tiny_spec: Any, cap: int, racers: int
) -> None:
    tenant, _ = new_tenant(store, "acme")
    start = threading.Barrier(racers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit() -> None:
        start.wait()
        try:
            store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu", max_active=cap)
            outcome = "created"
        except QuotaExceeded:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=submit) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["created"] * cap + ["refused"] * (racers - cap)
    assert store.count_active(tenant) == cap


def test_the_cap_counts_only_the_tenants_own_jobs_under_the_lock(
    store: JobStore, new_tenant: Any, tiny_spec: Any
) -> None:
    tenant, _ = new_tenant(store, "acme")
    other, _ = new_tenant(store, "other")
    store.create_job(tenant_id=other, spec=tiny_spec(), queue="gpu", max_active=1)
    created = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu", max_active=1)
    assert created.created
    with pytest.raises(QuotaExceeded):
        store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu", max_active=1)
