from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, inspect, select

from service.db.models import ACTIVE_STATES, Base, Job
from service.errors import IdempotencyConflict, InvalidCursor, JobNotFound, QuotaExceeded
from service.store import JobStore

SPEC = {
    "name": "tiny",
    "model": {"arch": "mlp"},
    "task": {"dataset": "digits"},
    "prune": {"target_sparsity": 0.5},
}


def submit(store: JobStore, tenant_id: int, **kwargs: Any) -> str:
    created = store.create_job(tenant_id=tenant_id, spec=SPEC, queue="gpu", **kwargs)
    return created.job.id


@pytest.fixture
def tenant(store: JobStore, new_tenant: Any) -> int:
    return int(new_tenant(store, "tenant")[0])


@pytest.fixture
def other(store: JobStore, new_tenant: Any) -> int:
    return int(new_tenant(store, "other")[0])


def test_migrations_create_the_contract_tables(store: JobStore) -> None:
    inspector = inspect(store.engine)
    assert {"tenants", "api_keys", "jobs", "job_steps", "artifacts"} <= set(
        inspector.get_table_names()
    )
    columns = {column["name"] for column in inspector.get_columns("jobs")}
    assert {"lease_owner", "heartbeat_at", "request_hash", "progress", "result"} <= columns


def test_migrations_match_the_models(store: JobStore) -> None:
    # Every table, column and index the models declare exists after the migrations, and no more.
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        drift = compare_metadata(context, Base.metadata)
    assert drift == []


def test_the_quota_count_reads_the_tenant_state_index(store: JobStore, tenant: int) -> None:
    indexes = {i["name"]: i["column_names"] for i in inspect(store.engine).get_indexes("jobs")}
    assert indexes["ix_jobs_tenant_state"] == ["tenant_id", "state"]
    if store.engine.dialect.name != "sqlite":
        return
    # SQLite says which index a query uses: the count must not scan the tenant's whole history
    query = select(func.count()).where(Job.tenant_id == tenant, Job.state.in_(ACTIVE_STATES))
    with store.engine.connect() as connection:
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").fetchall()
    assert any("ix_jobs_tenant_state" in str(row) for row in plan), plan


def test_new_job_is_queued_with_utc_timestamps(store: JobStore, tenant: int) -> None:
    job = store.get_job(tenant, submit(store, tenant))
    assert (job.state, job.attempt, job.target_sparsity) == ("queued", 0, 0.5)
    assert (
        job.created_at.utcoffset() is not None and job.created_at.utcoffset().total_seconds() == 0
    )


def test_same_key_and_body_returns_the_first_job(store: JobStore, tenant: int) -> None:
    first = store.create_job(tenant_id=tenant, spec=SPEC, queue="gpu", idempotency_key="k1")
    again = store.create_job(tenant_id=tenant, spec=SPEC, queue="gpu", idempotency_key="k1")
    assert first.created and not again.created
    assert again.job.id == first.job.id
    assert store.count_active(tenant) == 1


def test_same_key_with_another_body_is_a_conflict(store: JobStore, tenant: int) -> None:
    store.create_job(tenant_id=tenant, spec=SPEC, queue="gpu", idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        store.create_job(
            tenant_id=tenant,
            spec={**SPEC, "prune": {"target_sparsity": 0.7}},
            queue="gpu",
            idempotency_key="k1",
        )


def test_idempotency_keys_are_per_tenant(store: JobStore, tenant: int, other: int) -> None:
    a = store.create_job(tenant_id=tenant, spec=SPEC, queue="gpu", idempotency_key="k")
    b = store.create_job(tenant_id=other, spec=SPEC, queue="gpu", idempotency_key="k")
    assert b.created and a.job.id != b.job.id


def test_quota_counts_only_active_jobs(store: JobStore, tenant: int) -> None:
    first = submit(store, tenant, max_active=2)
    submit(store, tenant, max_active=2)
    with pytest.raises(QuotaExceeded):
        submit(store, tenant, max_active=2)
    store.request_cancel(tenant, first)
    assert store.count_active(tenant) == 1
    submit(store, tenant, max_active=2)


def test_other_tenants_job_is_not_found(store: JobStore, tenant: int, other: int) -> None:
    job_id = submit(store, tenant)
    with pytest.raises(JobNotFound):
        store.get_job(other, job_id)
    with pytest.raises(JobNotFound):
        store.request_cancel(other, job_id)
    assert store.get_job(tenant, job_id).state == "queued"


def test_listing_pages_newest_first_without_repeats(
    store: JobStore, tenant: int, other: int
) -> None:
    ids = [submit(store, tenant) for _ in range(7)]
    submit(store, other)
    seen: list[str] = []
    cursor = None
    while True:
        page = store.list_jobs(tenant, limit=3, cursor=cursor)
        seen.extend(job.id for job in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == list(reversed(ids))


def test_listing_filters_by_state(store: JobStore, tenant: int) -> None:
    keep = submit(store, tenant)
    gone = submit(store, tenant)
    store.request_cancel(tenant, gone)
    assert [job.id for job in store.list_jobs(tenant, state="queued").items] == [keep]
    assert [job.id for job in store.list_jobs(tenant, state="cancelled").items] == [gone]


def test_bad_cursor_and_limit_are_refused(store: JobStore, tenant: int) -> None:
    with pytest.raises(InvalidCursor):
        store.list_jobs(tenant, cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit 0"):
        store.list_jobs(tenant, limit=0)


def test_cancel_of_queued_job_is_immediate(store: JobStore, tenant: int) -> None:
    job = store.request_cancel(tenant, submit(store, tenant))
    assert (job.state, job.cancel_requested) == ("cancelled", True)
    assert job.finished_at is not None


def test_cancel_of_running_job_asks_the_worker(store: JobStore, tenant: int) -> None:
    job_id = submit(store, tenant)
    assert store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3) is not None
    job = store.request_cancel(tenant, job_id)
    assert (job.state, job.cancel_requested) == ("cancelling", True)
    assert store.heartbeat(job_id, owner="w1").cancel_requested
    assert store.finish(job_id, owner="w1", state="cancelled")
    assert store.request_cancel(tenant, job_id).state == "cancelled"
