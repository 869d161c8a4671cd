"""Fuzz every operation of the OpenAPI schema with schemathesis (positive and negative data).

The check on every answer: never a 5xx, and every refusal (4xx) carries the service's error body
with a non-empty code and a message (a 422 also names the field).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err


@dataclass
class FuzzReport:
    """What a fuzz run sent and got back."""

    requests: int = 0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    operations: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def refusal_problem(status: int, body: Any) -> str | None:
    """Why an answer breaks the rule, or None when it keeps it.

    Args:
        status: the HTTP status.
        body: the parsed JSON body (None when it was not JSON).
    """
    if status >= 500:
        return f"server error {status}"
    if status < 400:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not error.get("code") or not error.get("message"):
        return f"{status} without an error code and message: {body!r}"
    if status == 422 and not error.get("field"):
        return f"422 that names no field: {body!r}"
    return None


def fuzz(
    app: FastAPI, *, headers: dict[str, str], examples: int, seed: int | None = 0
) -> FuzzReport:
    """Send `examples` generated requests per operation and mode to `app` (ASGI, in process).

    Args:
        app: the API.
        headers: sent with every request (the API key).
        examples: hypothesis examples per operation and generation mode.
        seed: hypothesis seed (None: random).

    Returns:
        The report; `failures` lists every answer that broke the rule, with its request.
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    report = FuzzReport()
    started = time.perf_counter()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        report.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz_operation(
                    operation.as_strategy(generation_mode=mode),
                    report=report,
                    label=f"({mode.value})",
                    headers=headers,
                    examples=examples,
                    seed=seed,
                )
            except Unsatisfiable:
                # Negative data is impossible for an operation that takes no input.
                report.skipped.append(f"{operation.label} ({mode.value})")
    report.seconds = time.perf_counter() - started
    return report


def _fuzz_operation(
    strategy: st.SearchStrategy[Any],
    *,
    report: FuzzReport,
    label: str,
    headers: dict[str, str],
    examples: int,
    seed: int | None,
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=seed is not None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    @given(st.data())
    def run(data: st.DataObject) -> None:
        case = data.draw(strategy)
        response = case.call(headers=headers)
        report.requests += 1
        report.statuses[response.status_code] += 1
        try:
            body = response.json()
        except ValueError:
            body = None
        problem = refusal_problem(response.status_code, body)
        if problem is not None:
            report.failures.append(f"{case.method} {case.formatted_path} {label}: {problem}")

    run()
