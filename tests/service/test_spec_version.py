"""The API refuses a spec_version newer than its own, naming the field; older ones are stored."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from core.contract.version import SPEC_VERSION


def test_a_newer_spec_version_is_refused_with_a_422_naming_the_field(
    api: TestClient, auth: dict[str, str], redis_db: redis.Redis, tiny_spec: Any
) -> None:
    spec = tiny_spec() | {"spec_version": SPEC_VERSION + 1}
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("validation_error", "spec_version")
    assert f"spec_version {SPEC_VERSION + 1} is newer" in error["message"]
    assert redis_db.llen("gpu") == 0


@pytest.mark.parametrize("version", [0, -1, "one", 1.5])
def test_a_malformed_spec_version_is_refused(
    api: TestClient, auth: dict[str, str], tiny_spec: Any, version: object
) -> None:
    response = api.post("/v1/jobs", json=tiny_spec() | {"spec_version": version}, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "spec_version"


def test_a_spec_without_a_version_is_stored_with_the_current_one(
    api: TestClient, auth: dict[str, str], tiny_spec: Any
) -> None:
    response = api.post("/v1/jobs", json=tiny_spec(), headers=auth)
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["spec_version"] == SPEC_VERSION
    explicit = api.post("/v1/jobs", json=tiny_spec() | {"spec_version": 1}, headers=auth)
    assert explicit.status_code in (200, 201), explicit.text
