"""The OpenAPI schema, fuzzed: no 5xx, every refusal a 4xx whose body names the problem."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi import FastAPI

from service.auth import create_key
from service.db.migrate import upgrade
from service.main import create_app
from service.settings import ApiSettings
from service.store import JobStore
from tests.security.conftest import REDIS_URL, redis_or_skip
from tests.security.fuzz import fuzz, refusal_problem

EXAMPLES = 25


@pytest.fixture
def fuzzed_app(tmp_path: Path) -> Iterator[tuple[FastAPI, str]]:
    redis_or_skip()
    database = f"sqlite:///{tmp_path / 'fuzz.db'}"
    upgrade(database)
    (tmp_path / "data").mkdir()
    store = JobStore.from_url(database)
    with store.tx() as session:
        key = create_key(session, "fuzz")
    store.engine.dispose()
    settings = ApiSettings(
        home=tmp_path / "home",
        database_url_env=database,
        redis_url_env=REDIS_URL,
        artifact_url_env=f"file://{tmp_path / 'artifacts'}",
        allowed_entrypoints=("userpkg",),
        allowed_file_roots=(str(tmp_path / "data"),),
        default_queue="fuzz",
    )
    yield create_app(settings), key
    redis.Redis.from_url(REDIS_URL).flushdb()


def test_fuzzed_requests_never_get_a_server_error_and_refusals_name_the_problem(
    fuzzed_app: tuple[FastAPI, str],
) -> None:
    app, key = fuzzed_app
    report = fuzz(app, headers={"Authorization": f"Bearer {key}"}, examples=EXAMPLES)
    assert report.operations >= 8
    # Operations without input give one example each; those with input give EXAMPLES.
    assert report.requests >= 5 * EXAMPLES
    assert not report.failures, "\n".join(report.failures[:20])
    assert any(200 <= status < 300 for status in report.statuses)
    assert any(400 <= status < 500 for status in report.statuses)


@pytest.mark.parametrize(
    ("status", "body", "broken"),
    [
        (500, {"error": {"code": "x", "message": "y"}}, True),
        (404, {"detail": "Not Found"}, True),
        (422, {"error": {"code": "validation_error", "message": "bad"}}, True),
        (422, {"error": {"code": "validation_error", "message": "bad", "field": "name"}}, False),
        (401, {"error": {"code": "unauthenticated", "message": "missing"}}, False),
        (200, [], False),
    ],
)
def test_refusal_rule_flags_bodies_that_do_not_name_the_problem(
    status: int, body: object, broken: bool
) -> None:
    assert (refusal_problem(status, body) is not None) is broken
