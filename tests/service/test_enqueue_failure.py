"""A broker failure tells the tenant to retry; the broker's address stays in the server log."""

from __future__ import annotations

import logging
import secrets
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import ApiSettings


def test_enqueue_failure_keeps_broker_details_out_of_the_job(
    settings: ApiSettings, auth: dict[str, str], tiny_spec: Any, caplog: pytest.LogCaptureFixture
) -> None:
    socket_path = f"/tmp/adaprune-missing-{secrets.token_hex(4)}/redis.sock"
    dead = settings.model_copy(update={"redis_url_env": f"unix://{socket_path}"})
    with (
        caplog.at_level(logging.WARNING, logger="service.routes.jobs"),
        TestClient(create_app(dead)) as api,
    ):
        response = api.post("/v1/jobs", json=tiny_spec(), headers=auth)
        jobs = api.get("/v1/jobs", headers=auth).json()["items"]
    assert response.status_code == 503
    assert socket_path not in response.text
    assert len(jobs) == 1 and jobs[0]["state"] == "failed"
    assert jobs[0]["error"] == {
        "code": "enqueue_failed",
        "message": "the job could not be queued; try again",
    }
    assert any(socket_path in record.getMessage() for record in caplog.records)
