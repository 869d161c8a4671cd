"""Fixtures for the fault tests: a private redis-server, a private PostgreSQL cluster, and
deployments with real `adaprune worker` processes. Missing services skip locally, fail in CI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.harness import Deployment, PostgresCluster, RedisServer, ServiceMissing

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(why: str) -> None:
    """Skip locally when a backing service is missing; fail in CI, where it must exist."""
    if IN_CI:
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        server.start()
    except (ServiceMissing, RuntimeError) as error:
        unavailable(str(error))
    yield server
    server.kill()


@pytest.fixture(scope="session")
def deployment(
    broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """SQLite, file storage, the private broker and two worker processes, shared by the tests."""
    root: Path = tmp_path_factory.mktemp("faults")
    dep = Deployment.open(
        root, database_url=f"sqlite:///{root / 'adaprune.db'}", redis_url=broker.url
    )
    try:
        dep.start_worker()
        dep.start_worker()
        dep.wait_workers_ready()
        yield dep
    finally:
        dep.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresCluster]:
    try:
        cluster = PostgresCluster()
        cluster.start()
    except (ServiceMissing, OSError, LookupError) as error:
        unavailable(f"no private PostgreSQL cluster: {error}")
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="module")
def pg_deployment(
    postgres: PostgresCluster, broker: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """PostgreSQL, file storage, the private broker and two worker processes."""
    dep = Deployment.open(
        tmp_path_factory.mktemp("faults-pg"), database_url=postgres.url, redis_url=broker.url
    )
    try:
        dep.start_worker()
        dep.start_worker()
        dep.wait_workers_ready()
        yield dep
    finally:
        dep.close()
