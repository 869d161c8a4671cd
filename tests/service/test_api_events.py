"""GET /v1/jobs/{id}/events (cursor and server-sent events), listing filters, unknown params."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.routes import events as event_routes
from service.store import JobStore


def submit(api: TestClient, auth: dict[str, str], spec: dict[str, Any]) -> str:
    response = api.post("/v1/jobs", json=spec, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_events_page_with_a_cursor(
    api: TestClient, api_store: JobStore, auth: dict[str, str], tiny_spec: Any
) -> None:
    job_id = submit(api, auth, tiny_spec())
    api_store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)
    api_store.append_event(job_id, owner="w1", kind="phase", message="phase: baseline")
    api_store.append_event(
        job_id, owner="w1", kind="warning", level="warning", message="chance", data={"n": 10}
    )
    first = api.get(f"/v1/jobs/{job_id}/events?limit=2", headers=auth)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["kind"] for e in body["events"]] == ["claimed", "phase"]
    assert body["next_after"] == body["events"][-1]["seq"]
    assert body["events"][0]["at"].endswith(("Z", "+00:00"))
    rest = api.get(f"/v1/jobs/{job_id}/events?after={body['next_after']}", headers=auth).json()
    assert [(e["kind"], e["level"], e["data"]) for e in rest["events"]] == [
        ("warning", "warning", {"n": 10})
    ]
    empty = api.get(f"/v1/jobs/{job_id}/events?after={rest['next_after']}", headers=auth).json()
    assert empty == {"events": [], "next_after": rest["next_after"]}
    bad = api.get(f"/v1/jobs/{job_id}/events?after=-1", headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "query.after"


def test_another_tenants_events_are_404(
    api: TestClient, api_store: JobStore, auth: dict[str, str], new_tenant: Any, tiny_spec: Any
) -> None:
    job_id = submit(api, auth, tiny_spec())
    _, key = new_tenant(api_store, "other")
    other = {"Authorization": f"Bearer {key}"}
    for path in (f"/v1/jobs/{job_id}/events", f"/v1/jobs/{job_id}/events/stream"):
        response = api.get(path, headers=other)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "job_not_found"


def parse_sse(text: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(events, ids, comment lines) of a server-sent event stream."""
    events, ids, comments = [], [], []
    for line in text.splitlines():
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: ") :]))
        elif line.startswith("id: "):
            ids.append(line[len("id: ") :])
        elif line.startswith(":"):
            comments.append(line)
    return events, ids, comments


def test_stream_follows_the_job_until_it_is_final(
    api: TestClient,
    api_store: JobStore,
    auth: dict[str, str],
    tiny_spec: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(event_routes, "HEARTBEAT_S", 0.2)
    job_id = submit(api, auth, tiny_spec())
    api_store.claim(job_id, owner="w1", stale_after_s=30, max_attempts=3)

    def finish_later() -> None:
        time.sleep(1.0)
        api_store.append_event(job_id, owner="w1", kind="step", message="step 1: keep")
        time.sleep(0.5)
        api_store.finish(job_id, owner="w1", state="failed", error_code="x", error_message="boom")

    worker = threading.Thread(target=finish_later)
    worker.start()
    started = time.monotonic()
    with api.stream("GET", f"/v1/jobs/{job_id}/events/stream", headers=auth) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    worker.join()
    assert time.monotonic() - started < 15
    events, ids, comments = parse_sse(text)
    assert [e["kind"] for e in events] == ["claimed", "step", "finished"]
    assert events[-1]["level"] == "error" and events[-1]["message"] == "failed: x: boom"
    assert ids == [str(e["seq"]) for e in events]
    assert ": keep-alive" in comments  # the silent second before the step
    # resuming after the last id sends nothing more and ends at once: the job is final
    again = api.get(
        f"/v1/jobs/{job_id}/events/stream",
        headers={**auth, "Last-Event-ID": ids[-1]},
    )
    assert parse_sse(again.text)[0] == []
    after = api.get(f"/v1/jobs/{job_id}/events/stream?after={ids[0]}", headers=auth)
    assert [e["kind"] for e in parse_sse(after.text)[0]] == ["step", "finished"]


def test_listing_filters_by_name_and_creation_time(
    api: TestClient, api_store: JobStore, auth: dict[str, str], tiny_spec: Any
) -> None:
    first = submit(api, auth, {**tiny_spec(), "name": "alpha"})
    created = api.get(f"/v1/jobs/{first}", headers=auth).json()["created_at"]
    time.sleep(0.01)
    second = submit(api, auth, {**tiny_spec(), "name": "beta"})

    def ids(query: str) -> list[str]:
        response = api.get(f"/v1/jobs?{query}", headers=auth)
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["items"]]

    assert ids("name=alpha") == [first]
    assert ids("name=beta&state=queued") == [second]
    assert ids("name=gamma") == []
    stamp = created.replace("+00:00", "Z").replace("Z", "%2B00:00")
    assert ids(f"created_before={stamp}") == []
    assert ids(f"created_after={stamp}") == [second, first]
    naive = created.replace("+00:00", "").replace("Z", "")
    assert ids(f"created_after={naive}") == [second, first]  # no zone: UTC
    assert ids("created_after=2999-01-01T00:00:00Z") == []
    bad = api.get("/v1/jobs?created_after=yesterday", headers=auth)
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "query.created_after"


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs?stat=failed",
        "/v1/jobs/{job}?verbose=1",
        "/v1/jobs/{job}/steps?page=2",
        "/v1/jobs/{job}/events?afterr=3",
        "/v1/jobs/{job}/events/stream?limit=3",
        "/v1/jobs/{job}/artifacts?x=1",
    ],
)
def test_unknown_query_parameters_are_422_naming_them(
    api: TestClient, auth: dict[str, str], tiny_spec: Any, path: str
) -> None:
    job_id = submit(api, auth, tiny_spec())
    response = api.get(path.format(job=job_id), headers=auth)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    name = path.rsplit("?", 1)[1].split("=")[0]
    assert error["code"] == "validation_error"
    assert error["field"] == f"query.{name}" and name in error["message"]


def test_every_unknown_parameter_is_named(api: TestClient, auth: dict[str, str]) -> None:
    response = api.get("/v1/jobs?b=1&a=2&state=queued", headers=auth)
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert [d["field"] for d in details] == ["query.a", "query.b"]
    assert all("state" in d["message"] for d in details)  # the allowed names are listed
