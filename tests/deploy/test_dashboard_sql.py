"""Every SQL query of the Grafana dashboards runs against real PostgreSQL with the contract's
tables, one finished job with three steps, and Grafana's macros replaced by plain SQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.deploy.metric_names import sql_queries_in_dashboards

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
JOB_ID = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"

CONTRACT_DDL = """
CREATE TABLE tenants (
    id SERIAL PRIMARY KEY, name VARCHAR(128) NOT NULL UNIQUE, max_active_jobs INTEGER NULL,
    created_at TIMESTAMPTZ NOT NULL);
CREATE TABLE api_keys (
    id SERIAL PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    key_hash VARCHAR(64) NOT NULL UNIQUE, prefix VARCHAR(8) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, revoked_at TIMESTAMPTZ NULL);
CREATE TABLE jobs (
    id VARCHAR(36) PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),
    name VARCHAR(128) NOT NULL, queue VARCHAR(64) NOT NULL, state VARCHAR(16) NOT NULL,
    phase VARCHAR(16) NULL, attempt INTEGER NOT NULL, spec JSON NOT NULL,
    idempotency_key VARCHAR(128) NULL, request_hash VARCHAR(64) NULL,
    cancel_requested BOOLEAN NOT NULL, lease_owner VARCHAR(128) NULL,
    heartbeat_at TIMESTAMPTZ NULL, created_at TIMESTAMPTZ NOT NULL,
    started_at TIMESTAMPTZ NULL, finished_at TIMESTAMPTZ NULL, error_code VARCHAR(64) NULL,
    error_message TEXT NULL, target_sparsity DOUBLE PRECISION NOT NULL,
    sparsity DOUBLE PRECISION NULL, dense_metric DOUBLE PRECISION NULL,
    metric DOUBLE PRECISION NULL, progress DOUBLE PRECISION NOT NULL, result JSON NULL,
    UNIQUE (tenant_id, idempotency_key));
CREATE TABLE job_steps (
    job_id VARCHAR(36) NOT NULL REFERENCES jobs(id), step INTEGER NOT NULL,
    attempt INTEGER NOT NULL, target_sparsity DOUBLE PRECISION NOT NULL,
    sparsity DOUBLE PRECISION NOT NULL, metric DOUBLE PRECISION NOT NULL,
    loss DOUBLE PRECISION NOT NULL, decision VARCHAR(16) NOT NULL,
    seconds DOUBLE PRECISION NOT NULL, epochs INTEGER NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (job_id, step));
CREATE TABLE artifacts (
    job_id VARCHAR(36) NOT NULL REFERENCES jobs(id), name VARCHAR(128) NOT NULL,
    storage_key VARCHAR(512) NOT NULL, size_bytes BIGINT NOT NULL, sha256 VARCHAR(64) NOT NULL,
    created_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (job_id, name));
"""

SEED = """
INSERT INTO tenants (name, created_at) VALUES ('acme', now() - interval '2 hours');
INSERT INTO jobs (id, tenant_id, name, queue, state, phase, attempt, spec, cancel_requested,
    created_at, started_at, finished_at, target_sparsity, sparsity, dense_metric, metric,
    progress, result)
VALUES (%(job)s, 1, 'mnist1d-cnn-90', 'gpu', 'succeeded', NULL, 1, '{}', false,
    now() - interval '1 hour', now() - interval '50 minutes', now() - interval '10 minutes',
    0.9, 0.88, 0.93, 0.925, 1.0, '{}');
INSERT INTO job_steps (job_id, step, attempt, target_sparsity, sparsity, metric, loss,
    decision, seconds, epochs, created_at)
VALUES (%(job)s, 1, 1, 0.3, 0.3, 0.931, 0.21, 'accelerate', 12.5, 1, now() - interval '40 minutes'),
       (%(job)s, 2, 1, 0.6, 0.6, 0.929, 0.24, 'keep', 12.1, 1, now() - interval '30 minutes'),
       (%(job)s, 3, 1, 0.9, 0.88, 0.925, 0.27, 'shrink', 12.9, 1, now() - interval '20 minutes');
"""

MACROS = [
    (re.compile(r"\$__timeFilter\(([^)]+)\)"), r"\1 BETWEEN now() - interval '7 days' AND now()"),
    (re.compile(r"\$__timeFrom\(\)"), "(now() - interval '7 days')"),
    (re.compile(r"\$__timeTo\(\)"), "now()"),
    (re.compile(r"\$\{job(?::[a-z]+)?\}|\$job\b"), JOB_ID),
]


def concrete(query: str) -> str:
    for pattern, replacement in MACROS:
        query = pattern.sub(replacement, query)
    assert "$" not in query, f"unknown Grafana macro or variable left in: {query}"
    return query


@pytest.fixture(scope="module")
def results_store() -> Iterator[psycopg.Connection]:
    name = f"adaprune_deploy_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as error:
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required: {error}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:5432/{name}", autocommit=True
            ) as connection:
                connection.execute(CONTRACT_DDL)
                for statement in filter(str.strip, SEED.split(";")):
                    params = {"job": JOB_ID} if "%(job)s" in statement else None
                    connection.execute(statement, params)
                yield connection
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_dashboards_have_sql_queries(root: Path) -> None:
    assert len(sql_queries_in_dashboards(root)) >= 6


@pytest.mark.integration
def test_every_dashboard_query_returns_rows_for_a_finished_job(
    root: Path, results_store: psycopg.Connection
) -> None:
    for query in sql_queries_in_dashboards(root):
        rows = results_store.execute(concrete(query)).fetchall()
        assert rows, query


@pytest.mark.integration
def test_step_curve_query_returns_the_three_steps_in_order(
    root: Path, results_store: psycopg.Connection
) -> None:
    curves = [q for q in sql_queries_in_dashboards(root) if q.startswith("SELECT step, sparsity")]
    assert len(curves) == 1
    cursor = results_store.execute(concrete(curves[0]))
    columns = [column.name for column in cursor.description or []]
    rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert [row["sparsity"] for row in rows] == [0.3, 0.6, 0.88]
    assert [row["metric"] for row in rows] == [0.931, 0.929, 0.925]


@pytest.mark.integration
def test_job_variable_offers_the_job_id_as_its_value(
    root: Path, results_store: psycopg.Connection
) -> None:
    variable = next(q for q in sql_queries_in_dashboards(root) if "__value" in q)
    cursor = results_store.execute(concrete(variable))
    columns = [column.name for column in cursor.description or []]
    row = dict(zip(columns, cursor.fetchone() or (), strict=True))
    assert row["__value"] == JOB_ID
    assert "mnist1d-cnn-90" in row["__text"]
