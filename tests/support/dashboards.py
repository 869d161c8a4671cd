"""Grafana's SQL queries as Grafana would send them: macros and the $job variable replaced."""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest

# Grafana's PostgreSQL macros over a 7-day dashboard range, and the $job variable.
_RANGE_FROM = "(now() - interval '7 days')"
_MACROS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\$__timeFilter\(([^)]+)\)"), rf"\1 BETWEEN {_RANGE_FROM} AND now()"),
    (re.compile(r"\$__timeFrom\(\)"), _RANGE_FROM),
    (re.compile(r"\$__timeTo\(\)"), "now()"),
]
_JOB_VARIABLE = re.compile(r"\$\{job(?::[a-z]+)?\}|\$job\b")


def concrete(query: str, *, job_id: str) -> str:
    """The query as Grafana would send it for the job `job_id` over the last 7 days."""
    for pattern, replacement in _MACROS:
        query = pattern.sub(replacement, query)
    query = _JOB_VARIABLE.sub(job_id, query)
    if "$" in query:
        raise ValueError(f"unknown Grafana macro or variable in: {query}")
    return query


def rows_of(connection: psycopg.Connection, query: str) -> list[dict[str, Any]]:
    cursor = connection.execute(query.encode())
    columns = [column.name for column in cursor.description or []]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def assert_step_panels_match(
    connection: psycopg.Connection, queries: list[str], *, job_id: str, steps: list[dict[str, Any]]
) -> None:
    """Every dashboard query over job_steps returns the job's steps as the API serves them."""
    step_queries = [query for query in queries if "FROM job_steps" in query]
    assert step_queries
    for query in step_queries:
        rows = rows_of(connection, concrete(query, job_id=job_id))
        assert [row["sparsity"] for row in rows] == pytest.approx(
            [step["sparsity"] for step in steps]
        ), query
        assert [row["metric"] for row in rows] == pytest.approx(
            [step["metric"] for step in steps]
        ), query
