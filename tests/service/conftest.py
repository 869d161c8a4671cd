"""Fixtures for the service tests: real Redis (db 15), PostgreSQL, SQLite, a moto S3 server."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from psycopg import sql

from service.auth import create_key, get_or_create_tenant
from service.db.migrate import upgrade
from service.main import create_app
from service.settings import ApiSettings
from service.store import JobStore
from tests.support.processes import flushed_redis, unavailable
from tests.support.redis_url import redis_test_url
from tests.support.s3 import moto_server

REDIS_URL = redis_test_url(15)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() == "true"
TABLES = "job_events, artifacts, job_steps, jobs, api_keys, tenants"


def _tiny_spec(**prune: Any) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model": {"arch": "mlp"},
        "task": {"dataset": "digits"},
        "prune": {"target_sparsity": 0.5, **prune},
    }


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"adaprune_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        unavailable("PostgreSQL at 127.0.0.1:5432")
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
        upgrade(url)
        return url
    url = str(request.getfixturevalue("pg_url"))
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    return url


@pytest.fixture
def store(database_url: str) -> Iterator[JobStore]:
    job_store = JobStore.from_url(database_url)
    yield job_store
    job_store.engine.dispose()


def _new_tenant(store: JobStore, name: str) -> tuple[int, str]:
    with store.tx() as session:
        key = create_key(session, name)
    with store.tx() as session:
        return get_or_create_tenant(session, name).id, key


TinySpec = Callable[..., dict[str, Any]]
NewTenant = Callable[[JobStore, str], tuple[int, str]]


@pytest.fixture
def tiny_spec() -> TinySpec:
    """Builds a small valid spec; keyword arguments override `prune` fields."""
    return _tiny_spec


@pytest.fixture
def new_tenant() -> NewTenant:
    """Creates a tenant with one API key: (tenant id, key)."""
    return _new_tenant


@pytest.fixture
def redis_db() -> Iterator[redis.Redis]:
    with flushed_redis(REDIS_URL) as client:
        yield client


@pytest.fixture
def settings(tmp_path: Path, redis_db: redis.Redis) -> ApiSettings:
    database = f"sqlite:///{tmp_path / 'api.db'}"
    upgrade(database)
    (tmp_path / "data").mkdir()
    return ApiSettings(
        home=tmp_path / "home",
        database_url=database,
        redis_url=REDIS_URL,
        artifact_url=f"file://{tmp_path / 'artifacts'}",
        allowed_entrypoints="userpkg",
        allowed_file_roots=str(tmp_path / "data"),
        max_body_bytes=4096,
        tenant_max_active_jobs=3,
        served_queues="gpu,cpu-small",
    )


@pytest.fixture
def api(settings: ApiSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def api_store(settings: ApiSettings) -> Iterator[JobStore]:
    job_store = JobStore.from_url(settings.database_url)
    yield job_store
    job_store.engine.dispose()


@pytest.fixture
def auth(api_store: JobStore) -> dict[str, str]:
    _, key = _new_tenant(api_store, "acme")
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return moto_endpoint
