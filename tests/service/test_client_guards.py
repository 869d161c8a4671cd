"""The client pulls only finished artifacts and never puts anything but a UUID in a URL path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main as cli_main
from service.client import AdapruneClient, ClientError
from service.settings import ApiSettings
from service.store import JobStore
from tests.service.test_client import publish, serve

JOB_ID = "0f6c3b0e-8d4a-4c0e-9a53-6f4d1b2c3a4e"


@pytest.fixture
def served(settings: ApiSettings, auth: dict[str, str]) -> Iterator[tuple[str, str]]:
    key = auth["Authorization"].removeprefix("Bearer ")
    for url in serve(settings):
        yield url, key


def test_pull_refuses_a_job_that_has_not_succeeded_and_creates_nothing(
    served: tuple[str, str], tiny_spec: Any, tmp_path: Path
) -> None:
    url, key = served
    with AdapruneClient(url, api_key=key) as client:
        job_id = client.submit(tiny_spec())["id"]
        with pytest.raises(ClientError, match="queued") as refused:
            client.pull(job_id, tmp_path / "pulls" / "out")
    assert refused.value.code == "no_artifact"
    assert not (tmp_path / "pulls").exists()


def test_pull_refuses_a_succeeded_job_without_a_manifest(
    served: tuple[str, str],
    api_store: JobStore,
    settings: ApiSettings,
    tiny_spec: Any,
    tmp_path: Path,
) -> None:
    url, key = served
    with AdapruneClient(url, api_key=key) as client:
        job_id = client.submit(tiny_spec())["id"]
        publish(api_store, settings, job_id, manifest=False)
        with pytest.raises(ClientError, match=r"manifest\.json"):
            client.pull(job_id, tmp_path / "pulls" / "out")
    assert not (tmp_path / "pulls").exists()


def test_pull_command_exits_non_zero_with_one_line(
    served: tuple[str, str],
    tiny_spec: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, key = served
    monkeypatch.setenv("ADAPRUNE_URL", url)
    monkeypatch.setenv("ADAPRUNE_API_KEY", key)
    monkeypatch.delenv("ADAPRUNE_DEBUG", raising=False)
    with AdapruneClient(url, api_key=key) as client:
        job_id = client.submit(tiny_spec())["id"]
    status = cli_main(["pull", job_id, "--out", str(tmp_path / "pulls" / "out")])
    captured = capsys.readouterr()
    assert status != 0
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1 and job_id in captured.err
    assert not (tmp_path / "pulls").exists()


@pytest.mark.parametrize("bad_id", ["../../metrics", "..", "a/b", JOB_ID + "/../x", "x\x00"])
def test_client_refuses_job_ids_that_are_not_uuids_without_a_request(bad_id: str) -> None:
    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"state": "queued"})

    client = AdapruneClient("http://api", api_key="k", transport=httpx.MockTransport(answer))
    with client:
        for call in (client.get, client.steps, client.cancel, client.artifacts):
            with pytest.raises(ClientError) as refused:
                call(bad_id)
            assert refused.value.code == "invalid_job_id" and refused.value.status is None
            assert "\n" not in str(refused.value)
    assert sent == []


def test_client_sends_uuid_job_ids(tmp_path: Path) -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json={"state": "queued"})

    with AdapruneClient("http://api", api_key="k", transport=httpx.MockTransport(answer)) as c:
        assert c.get(JOB_ID)["state"] == "queued"
    assert paths == [f"/v1/jobs/{JOB_ID}"]
