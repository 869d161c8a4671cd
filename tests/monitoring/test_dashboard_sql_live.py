"""Every SQL query of the Grafana dashboards runs against a PostgreSQL results store made by the
Alembic migrations and holding a job that a real worker finished."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.deploy.metric_names import sql_queries_in_dashboards
from tests.support.dashboards import assert_step_panels_match, concrete, rows_of
from tests.support.deployment import Deployment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def results_store(
    running_deployment: Deployment, finished_job: dict[str, Any]
) -> Iterator[psycopg.Connection]:
    url = running_deployment.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as connection:
        yield connection


def test_concrete_replaces_macros_and_refuses_unknown_ones() -> None:
    query = "SELECT 1 FROM jobs WHERE $__timeFilter(finished_at) AND id = '${job}'"
    assert concrete(query, job_id="abc") == (
        "SELECT 1 FROM jobs WHERE finished_at BETWEEN (now() - interval '7 days') AND now() "
        "AND id = 'abc'"
    )
    with pytest.raises(ValueError, match="unknown Grafana macro"):
        concrete("SELECT $__unixEpochFilter(t)", job_id="abc")


def test_every_dashboard_query_returns_rows_for_the_finished_job(
    root: Path, results_store: psycopg.Connection, finished_job: dict[str, Any]
) -> None:
    queries = sql_queries_in_dashboards(root)
    assert queries
    empty = [
        query
        for query in queries
        if not rows_of(results_store, concrete(query, job_id=finished_job["id"]))
    ]
    assert empty == []


def test_job_variable_offers_the_finished_job(
    root: Path, results_store: psycopg.Connection, finished_job: dict[str, Any]
) -> None:
    variable = next(q for q in sql_queries_in_dashboards(root) if "__value" in q)
    rows = rows_of(results_store, concrete(variable, job_id=finished_job["id"]))
    assert [row["__value"] for row in rows] == [finished_job["id"]]
    assert "succeeded" in rows[0]["__text"]


def test_step_queries_return_the_steps_the_api_reports(
    root: Path,
    results_store: psycopg.Connection,
    running_deployment: Deployment,
    finished_job: dict[str, Any],
) -> None:
    with running_deployment.client() as client:
        steps = client.get(f"/v1/jobs/{finished_job['id']}/steps").raise_for_status().json()
    assert_step_panels_match(
        results_store, sql_queries_in_dashboards(root), job_id=finished_job["id"], steps=steps
    )
