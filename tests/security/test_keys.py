"""API keys: hashed at rest, compared in constant time, revocable, never logged."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from bench.live import ROOT, Deployment, tiny_job
from service.auth import authenticate, generate_key
from service.db.models import ApiKey
from service.errors import AuthenticationFailed
from tests.security.conftest import api_log


def test_database_holds_only_the_sha256_of_each_key(live: Deployment) -> None:
    keys = [live.key("hashed-a"), live.key("hashed-b")]
    with live.store.sessions() as session:
        rows = {row.key_hash: row for row in session.scalars(select(ApiKey))}
    for key in keys:
        digest = hashlib.sha256(key.encode()).hexdigest()
        assert digest in rows
        assert rows[digest].prefix == key[:8]
    database = Path(live.database_url.removeprefix("sqlite:///"))
    stored = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    for key in keys:
        assert key.encode() not in stored
        assert key[8:].encode() not in stored


@pytest.mark.parametrize("which", ["right key", "wrong key of equal length"])
def test_key_check_goes_through_hmac_compare_digest(
    live: Deployment, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    key = live.key("constant-time")
    wrong = generate_key()
    assert len(wrong) == len(key) and wrong != key
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    sent = key if which == "right key" else wrong
    with live.store.sessions() as session:
        if which == "right key":
            assert authenticate(session, f"Bearer {sent}").name == "constant-time"
        else:
            with pytest.raises(AuthenticationFailed):
                authenticate(session, f"Bearer {sent}")
    assert len(calls) == 1
    stored, given = calls[0]
    assert given == hashlib.sha256(sent.encode()).hexdigest()
    assert len(stored) == len(given) == 64


def test_revoked_key_gets_401_end_to_end(live: Deployment) -> None:
    key = live.key("revoked")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{live.url}/v1/jobs", headers=headers, timeout=10).status_code == 200
    revoke = subprocess.run(
        [sys.executable, "-m", "cli", "keys", "revoke", key],
        cwd=ROOT,
        env=live.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert revoke.returncode == 0, revoke.stderr
    response = httpx.get(f"{live.url}/v1/jobs", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json()["error"]["message"] == "API key revoked"
    assert key not in response.text


def test_no_key_or_authorization_value_reaches_the_debug_logs(live: Deployment) -> None:
    key = live.key("logged")
    wrong = generate_key()
    with httpx.Client(base_url=live.url, timeout=10) as http:
        accepted = http.post(
            "/v1/jobs", json=tiny_job(), headers={"Authorization": f"Bearer {key}"}
        )
        assert accepted.status_code == 201, accepted.text
        job_id = accepted.json()["id"]
        assert http.get(f"/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
        refused = http.get("/v1/jobs", headers={"Authorization": f"Bearer {wrong}"})
        assert refused.status_code == 401
        malformed = http.get("/v1/jobs", headers={"Authorization": f"Token {wrong}"})
        assert malformed.status_code == 401
    logs = api_log(live)
    # The capture works: DEBUG records and uvicorn's access log lines are there.
    assert "DEBUG" in logs
    assert f"GET /v1/jobs/{job_id} HTTP/1.1" in logs
    for secret in (key, wrong, key[len("ap_") :], wrong[len("ap_") :]):
        assert secret not in logs
