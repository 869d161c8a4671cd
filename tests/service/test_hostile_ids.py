"""Ids and cursors that are not UUIDs are unknown jobs; unexpected errors say nothing inside."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.errors import InvalidCursor, JobNotFound
from service.main import create_app
from service.settings import ApiSettings
from service.store import JobStore
from service.store.jobs import decode_cursor

BAD_IDS = ["%00", "a%00", "not-a-uuid", "00000000-0000-0000-0000-00000000000%00", "..%2Fmetrics"]
ROUTES = [
    ("GET", "/v1/jobs/{}"),
    ("GET", "/v1/jobs/{}/steps"),
    ("POST", "/v1/jobs/{}/cancel"),
    ("GET", "/v1/jobs/{}/artifacts"),
    ("GET", "/v1/jobs/{}/artifacts/manifest.json"),
]


def cursor_of(created: str, job_id: str) -> str:
    raw = json.dumps([created, job_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
def db_api(settings: ApiSettings, database_url: str) -> Iterator[tuple[TestClient, JobStore]]:
    """The API on SQLite and on PostgreSQL; server errors come back as responses."""
    app = create_app(settings.model_copy(update={"database_url_env": database_url}))
    store = JobStore.from_url(database_url)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, store
    store.engine.dispose()


@pytest.fixture
def db_auth(db_api: tuple[TestClient, JobStore], new_tenant: Any) -> dict[str, str]:
    _, key = new_tenant(db_api[1], "acme")
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_job_routes_answer_404_for_ids_that_are_not_uuids(
    db_api: tuple[TestClient, JobStore],
    db_auth: dict[str, str],
    method: str,
    route: str,
    bad_id: str,
) -> None:
    client, _ = db_api
    response = client.request(method, route.format(bad_id), headers=db_auth)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] in ("job_not_found", "not_found")


def test_a_nul_id_answers_like_an_unknown_id(
    db_api: tuple[TestClient, JobStore], db_auth: dict[str, str]
) -> None:
    client, _ = db_api
    unknown = client.get("/v1/jobs/00000000-0000-0000-0000-000000000000", headers=db_auth)
    nul = client.get("/v1/jobs/%00", headers=db_auth)
    assert (nul.status_code, nul.json()["error"]["code"]) == (404, unknown.json()["error"]["code"])


def test_a_cursor_with_a_nul_id_is_a_400(
    db_api: tuple[TestClient, JobStore], db_auth: dict[str, str]
) -> None:
    client, _ = db_api
    cursor = cursor_of("2024-01-01T00:00:00+00:00", "\u0000")
    response = client.get("/v1/jobs", params={"cursor": cursor}, headers=db_auth)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("job_id", ["\u0000", "x", "00000000-0000-0000-0000-00000000000G", ""])
def test_decode_cursor_refuses_ids_that_are_not_uuids(job_id: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor_of("2024-01-01T00:00:00+00:00", job_id))


def test_store_reads_of_bad_ids_find_nothing(store: JobStore, new_tenant: Any) -> None:
    tenant, _ = new_tenant(store, "acme")
    with pytest.raises(JobNotFound):
        store.get_job(tenant, "a\u0000")
    with pytest.raises(JobNotFound):
        store.request_cancel(tenant, "a\u0000")
    assert store.load_job("\u0000") is None
    assert store.claim("\u0000", owner="w", stale_after_s=30, max_attempts=3) is None


def test_unexpected_errors_answer_a_json_500_without_internals(
    settings: ApiSettings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    def explode() -> None:
        raise RuntimeError("secret detail /var/run/redis.sock")

    app.add_api_route("/explode", explode)
    with (
        caplog.at_level(logging.ERROR, logger="service.http_errors"),
        TestClient(app, raise_server_exceptions=False) as client,
    ):
        response = client.get("/explode")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "secret" not in response.text
    logged = [r for r in caplog.records if r.name == "service.http_errors"]
    assert logged and logged[0].exc_info is not None
    assert "secret detail" in str(logged[0].exc_info[1])
