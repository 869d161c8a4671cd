"""Odd text in the results store, on SQLite and PostgreSQL: rows written before strict JSON was
enforced stay listable, and a job's stored error never carries the store's own text (SQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings
from service.store import JobStore
from service.store.redact import STORE_REFUSED, tenant_safe
from tests.service.conftest import REDIS_URL, NewTenant, TinySpec

LONE = "\ud800"
SQL_ERROR = (
    "IntegrityError: (sqlite3.IntegrityError) NOT NULL constraint failed: job_steps.loss "
    "[SQL: INSERT INTO job_steps (job_id, step, loss) VALUES (?, ?, ?)] "
    "[parameters: ('0f0e', 0, None)] (Background on this error at: https://sqlalche.me/e/20/gkpj)"
)


@pytest.fixture
def api_on(database_url: str, tmp_path: Path, redis_db: redis.Redis) -> Iterator[TestClient]:
    settings = ApiSettings(
        home=tmp_path / "home",
        database_url=database_url,
        redis_url=REDIS_URL,
        artifact_url=f"file://{tmp_path / 'artifacts'}",
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_stored_row_with_a_lone_surrogate_is_still_listed(
    api_on: TestClient, store: JobStore, new_tenant: NewTenant, tiny_spec: TinySpec
) -> None:
    tenant, key = new_tenant(store, "odd-text")
    auth = {"Authorization": f"Bearer {key}"}
    spec = tiny_spec()
    spec["model"] = {"arch": "mlp", "kwargs": {"note": f"a{LONE}b", f"k{LONE}": 1}}
    # Written straight to the store, as a submission before the strict-JSON check could.
    old = store.create_job(tenant_id=tenant, spec=spec, queue="gpu").job
    fine = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job
    listing = api_on.get("/v1/jobs", headers=auth)
    assert listing.status_code == 200, listing.text
    assert [item["id"] for item in listing.json()["items"]] == [fine.id, old.id]
    shown = api_on.get(f"/v1/jobs/{old.id}", headers=auth)
    assert shown.status_code == 200, shown.text
    assert shown.json()["spec"]["model"]["kwargs"] == {"note": "a\ufffdb", "k\ufffd": 1}


def test_a_store_error_is_stored_without_its_sql(
    store: JobStore, new_tenant: NewTenant, tiny_spec: TinySpec
) -> None:
    tenant, _ = new_tenant(store, "sql-error")
    job = store.create_job(tenant_id=tenant, spec=tiny_spec(), queue="gpu").job
    claim = store.claim(job.id, owner="w-1", stale_after_s=30, max_attempts=3)
    assert claim is not None
    assert store.finish(
        job.id, owner="w-1", state="failed", error_code="internal_error", error_message=SQL_ERROR
    )
    stored = store.load_job(job.id)
    assert stored is not None
    assert stored.error_message == f"IntegrityError: {STORE_REFUSED}"
    events = store.list_events(job.id)
    assert all("INSERT" not in e.message and "sqlite3" not in e.message for e in events)


@pytest.mark.parametrize(
    ("message", "kept"),
    [
        ("x_train: contains NaN or infinite values", "x_train: contains NaN or infinite values"),
        (
            "model.entrypoint: 'sqlalchemy:x' is not allowed",
            "model.entrypoint: 'sqlalchemy:x' is not allowed",
        ),
        ('(psycopg.errors.NotNullViolation) null value in column "loss"', STORE_REFUSED),
        (SQL_ERROR, f"IntegrityError: {STORE_REFUSED}"),
    ],
)
def test_tenant_safe_drops_only_the_store_text(message: str, kept: str) -> None:
    assert tenant_safe(message) == kept
