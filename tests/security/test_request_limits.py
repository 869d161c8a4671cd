"""Requests that try to hold the API, against a live `adaprune api` process over raw sockets:
slow bodies, slow or silent request heads, too many connections, bodies that made a check
quadratic, lenient JSON, and a redirect built from the Host header.

Set ADAPRUNE_SECURITY_TABLE_LIMITS=path.json to save the observed answers for the table in
docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from bench.live import Deployment, deployment
from tests.security.conftest import REDIS_URL, redis_or_skip

TIMEOUT_S = 1.0
MAX_CONNECTIONS = 16
BACKSLASH_QUOTE = b'"\\' * 32768  # 64 KiB, the default ADAPRUNE_MAX_BODY_BYTES
OBSERVED: dict[str, dict[str, str]] = {}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    redis_or_skip()
    root = tmp_path_factory.mktemp("limits")
    with deployment(
        root,
        redis_url=REDIS_URL,
        ADAPRUNE_BODY_TIMEOUT_S=str(TIMEOUT_S),
        ADAPRUNE_HEADER_TIMEOUT_S=str(TIMEOUT_S),
        ADAPRUNE_KEEP_ALIVE_S="1",
        ADAPRUNE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    ) as deploy:
        deploy.start_api()
        yield deploy
    target = os.environ.get("ADAPRUNE_SECURITY_TABLE_LIMITS")
    if target:
        Path(target).write_text(json.dumps(OBSERVED, indent=1))


def _address(deploy: Deployment) -> tuple[str, int]:
    host, port = deploy.url.removeprefix("http://").split(":")
    return host, int(port)


def _connect(deploy: Deployment) -> socket.socket:
    return socket.create_connection(_address(deploy), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def _observe(name: str, expected: str, observed: str) -> None:
    OBSERVED[name] = {"expected": expected, "observed": observed}


def _post_raw(deploy: Deployment, body: bytes) -> tuple[bytes, float]:
    head = (
        b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    started = time.perf_counter()
    with _connect(deploy) as sock:
        sock.sendall(head + body)
        raw = _read_all(sock)
    return raw, time.perf_counter() - started


def test_a_body_of_backslash_quotes_is_answered_at_once(api: Deployment) -> None:
    # Two at once: the single-process API must not serialise them behind a slow check.
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _post_raw(api, BACKSLASH_QUOTE), range(2)))
    slowest = max(seconds for _, seconds in answers)
    statuses = sorted(_status(raw) for raw, _ in answers)
    _observe(
        'two 64 KiB unauthenticated bodies of `"\\` at once',
        "each a 4xx within 1 s",
        f"{'/'.join(map(str, statuses))} in {slowest:.3f} s (slowest)",
    )
    assert all(400 <= status < 500 for status in statuses), answers
    assert slowest < 1.0, answers


def test_a_body_that_never_finishes_gets_408(api: Deployment) -> None:
    started = time.perf_counter()
    with _connect(api) as sock:
        sock.sendall(
            b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{"
        )
        raw = _read_all(sock)
    seconds = time.perf_counter() - started
    code = json.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]["code"]
    _observe(
        "body declared 100 bytes, 1 sent, then silence",
        f"408 request_timeout after {TIMEOUT_S:g} s, closed",
        f"{_status(raw)} {code} after {seconds:.1f} s, closed",
    )
    assert _status(raw) == 408, raw
    assert b"request_timeout" in raw and b"within 1 s" in raw
    assert TIMEOUT_S <= seconds < TIMEOUT_S + 3


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        ("request head never finished (slow headers)", b"POST /v1/jobs HTTP/1.1\r\nHost: api\r\n"),
        ("connection that sends nothing", b""),
    ],
)
def test_a_request_head_that_never_finishes_is_closed(
    api: Deployment, name: str, sent: bytes
) -> None:
    started = time.perf_counter()
    with _connect(api) as sock:
        sock.sendall(sent)
        raw = _read_all(sock)
    seconds = time.perf_counter() - started
    _observe(
        name, f"408 after {TIMEOUT_S:g} s, closed", f"{_status(raw)} after {seconds:.1f} s, closed"
    )
    assert _status(raw) == 408, raw
    assert TIMEOUT_S <= seconds < TIMEOUT_S + 3


def test_a_request_head_over_the_size_limit_is_refused_at_once(api: Deployment) -> None:
    started = time.perf_counter()
    with _connect(api) as sock:
        # 20 KiB of one header, still unfinished: more than ADAPRUNE_MAX_HEADER_BYTES buffered.
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Pad: " + b"a" * 20480)
        raw = _read_all(sock)
    seconds = time.perf_counter() - started
    _observe(
        "request head of 20 KiB, unfinished",
        "400 at once, closed",
        f"{_status(raw)} after {seconds:.2f} s, closed",
    )
    assert _status(raw) == 400, raw
    assert seconds < TIMEOUT_S


def test_connections_beyond_the_cap_are_refused_and_the_api_recovers(api: Deployment) -> None:
    held = [_connect(api) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # every held connection is accepted before the extra ones arrive
        started = time.perf_counter()
        extra = [_connect(api) for _ in range(3 * MAX_CONNECTIONS)]
        refused = []
        for sock in extra:
            with sock:
                refused.append(_read_all(sock))
        refusal_s = time.perf_counter() - started
        assert all(_status(raw) == 503 for raw in refused), refused[:3]
        assert all(b"too many connections" in raw for raw in refused)
        assert refusal_s < TIMEOUT_S, refusal_s
        # The held ones are closed by the head deadline; then everyone gets in again.
        for sock in held:
            assert _status(_read_all(sock)) == 408
    finally:
        for sock in held:
            sock.close()
    recovered = httpx.get(f"{api.url}/healthz", timeout=5)
    _observe(
        f"{MAX_CONNECTIONS} silent connections held, then {3 * MAX_CONNECTIONS} more",
        f"the extra ones 503 at once; the held ones 408 after {TIMEOUT_S:g} s; then served",
        f"{len(refused)} x 503 in {refusal_s:.2f} s; held ones 408; then /healthz "
        f"{recovered.status_code}",
    )
    assert recovered.status_code == 200


def test_a_trailing_slash_with_a_foreign_host_is_not_redirected(api: Deployment) -> None:
    with _connect(api) as sock:
        sock.sendall(b"GET /v1/jobs/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        raw = _read_all(sock)
    head = raw.split(b"\r\n\r\n", 1)[0].lower()
    _observe(
        "GET /v1/jobs/ with Host: evil.example",
        "404, no Location",
        f"{_status(raw)}, {'Location present' if b'location:' in head else 'no Location'}",
    )
    assert _status(raw) == 404, raw
    assert b"location:" not in head and b"evil.example" not in raw


def test_lenient_json_is_refused_before_anything_is_stored_or_queued(api: Deployment) -> None:
    key = api.key("lenient")
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    base = (
        '{"name": "x", "model": {"arch": "mlp", "kwargs": %s}, "task": {"dataset": "digits"},'
        ' "prune": {"target_sparsity": 0.5}}'
    )
    bodies = {
        "NaN literal in model.kwargs": (base % '{"scale": NaN}', "body", "NaN"),
        "lone surrogate in model.kwargs": (
            base % '{"note": "\\ud800"}',
            "model.kwargs.note",
            "lone UTF-16 surrogate \\ud800",
        ),
    }
    broker = redis.Redis.from_url(REDIS_URL)
    try:
        for name, (body, field, names) in bodies.items():
            response = httpx.post(f"{api.url}/v1/jobs", content=body, headers=auth, timeout=10)
            error = response.json()["error"]
            _observe(
                name,
                "422 json_not_strict, nothing stored",
                f"{response.status_code} {error['details'][0]['code']}: {error['message']}",
            )
            assert response.status_code == 422, response.text
            assert error["field"] == field and names in error["message"], error
            assert error["details"][0]["code"] == "json_not_strict"
        listed = httpx.get(f"{api.url}/v1/jobs", headers=auth, timeout=10)
        assert listed.status_code == 200 and listed.json()["items"] == []
        assert broker.llen(api.queue) == 0
    finally:
        broker.close()
