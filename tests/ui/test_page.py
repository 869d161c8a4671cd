"""The web page in headless Chromium against a real API and worker: a running job, its curve,
its steps, escaped job text, the key kept in session storage, an artifact downloaded with it,
and /docs rendered from bundled assets with no other host."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.auth import get_or_create_tenant
from service.store import JobStore
from tests.support.browser import dump_dom, screenshot
from tests.support.deployment import Deployment, tiny_spec
from tests.support.devtools import browser_page
from tests.support.processes import wait_until

HOSTILE_NAME = '<img src=x onerror="document.title=1">'
SCREENSHOT_DIR_ENV = "ADAPRUNE_UI_SCREENSHOT"


class Element:
    """One element of a dumped DOM: its tag, attributes and the text inside it."""

    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text = tag, attrs, ""

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Dom(HTMLParser):
    """Every element of an HTML document, in order, with the text each one contains."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "hr", "source", "col", "wbr"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                return

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text += data

    def by_id(self, element_id: str) -> Element:
        found = [e for e in self.elements if e.attrs.get("id") == element_id]
        assert len(found) == 1, f"{len(found)} elements with id {element_id!r}"
        return found[0]

    def select(self, tag: str, **attrs: str) -> list[Element]:
        """Elements named `tag` whose attributes hold these values ("class_" matches one class)."""
        wanted_class = attrs.pop("class_", None)
        return [
            e
            for e in self.elements
            if e.tag == tag
            and all(e.attrs.get(name.replace("_", "-")) == v for name, v in attrs.items())
            and (wanted_class is None or wanted_class in e.classes())
        ]


@pytest.fixture(scope="module")
def finished_job(deployment: Deployment) -> dict[str, Any]:
    """A short job run to success (before the slow one takes the only worker)."""
    job = deployment.run_job(tiny_spec(name="ui-done"), timeout_s=180)
    assert job["state"] == "succeeded", (job, deployment.logs())
    return job


@pytest.fixture(scope="module")
def running_job(deployment: Deployment, finished_job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A job slow enough to watch, with a few steps recorded; cancelled afterwards."""
    spec = tiny_spec(steps=200, epochs_per_step=10, name="ui-watch")
    spec["finetune"]["batch_size"] = 16
    with deployment.client() as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]

        def three_steps() -> dict[str, Any] | None:
            job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
            assert job["state"] in ("queued", "running"), (job, deployment.logs())
            steps = client.get(f"/v1/jobs/{job_id}/steps").raise_for_status().json()
            return job if job["state"] == "running" and len(steps) >= 3 else None

        yield wait_until(three_steps, what="a running job with three steps", timeout_s=120)
        client.post(f"/v1/jobs/{job_id}/cancel")


@pytest.fixture(scope="module")
def hostile_job(deployment: Deployment) -> str:
    """A queued job whose name is markup (stored directly: the API refuses such names)."""
    store = JobStore.from_url(deployment.database_url)
    try:
        with store.tx() as session:
            tenant_id = get_or_create_tenant(session, "acme").id
        spec = tiny_spec(name=HOSTILE_NAME)
        return store.create_job(tenant_id=tenant_id, spec=spec, queue="ui-parked").job.id
    finally:
        store.engine.dispose()


def _page_url(deployment: Deployment, job_id: str) -> str:
    return f"{deployment.api_url}/ui#key={deployment.key}&job={job_id}"


def test_page_renders_the_running_job_and_its_curve(
    deployment: Deployment, running_job: dict[str, Any], hostile_job: str
) -> None:
    dom_text = dump_dom(_page_url(deployment, running_job["id"]))
    dom = Dom(dom_text)

    (row,) = dom.select("tr", data_job_id=running_job["id"])
    assert row.attrs["data-state"] == "running"
    assert "ui-watch" in row.text and "0.600" in row.text  # the name, the asked sparsity

    job_panel = dom.by_id("job")
    assert "hidden" not in job_panel.attrs
    assert job_panel.attrs["data-state"] == "running"
    assert dom.by_id("job-title").text == "ui-watch"

    curve = dom.by_id("curve")
    points = dom.select("circle", class_="point")
    assert int(curve.attrs["data-points"]) >= 3
    assert len(points) == int(curve.attrs["data-points"])
    assert [int(p.attrs["data-step"]) for p in points] == list(range(len(points)))
    assert dom.select("line", id="target-line") and dom.select("rect", id="tolerance-band")
    step_rows = [e for e in dom.select("tr") if "data-step" in e.attrs]
    assert len(step_rows) == len(points)

    events = dom.select("li", class_="event")
    assert events or "hidden" not in dom.by_id("events-empty").attrs

    # Job-provided text is text: the hostile name is shown, and no element came of it.
    (hostile_row,) = dom.select("tr", data_job_id=hostile_job)
    assert HOSTILE_NAME in hostile_row.text
    assert not dom.select("img")
    assert dom.by_id("status").text.startswith("updated")
    # The key went from the address bar into session storage; the page does not show it.
    assert deployment.key not in dom_text


def test_screenshot_of_the_page(
    deployment: Deployment, running_job: dict[str, Any], tmp_path: Path
) -> None:
    folder = Path(os.environ.get(SCREENSHOT_DIR_ENV) or tmp_path)
    path = screenshot(_page_url(deployment, running_job["id"]), folder / "ui.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_docs_render_offline_from_bundled_assets(deployment: Deployment) -> None:
    page = httpx.get(f"{deployment.api_url}/docs", timeout=10).text
    assert not re.findall(r"https?://", page)
    # Chromium resolves no host but 127.0.0.1: Swagger UI renders only from our assets.
    dom = Dom(dump_dom(f"{deployment.api_url}/docs", budget_ms=6000))
    operations = [e for e in dom.elements if "opblock-summary-path" in e.classes()]
    assert any("/v1/jobs" in e.attrs.get("data-path", e.text) for e in operations), (
        "Swagger UI did not render the API's operations"
    )


def test_key_moves_to_session_storage_and_downloads_send_it(
    deployment: Deployment, finished_job: dict[str, Any], tmp_path: Path
) -> None:
    job = finished_job
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with browser_page(downloads) as page:
        page.call("Page.navigate", url=_page_url(deployment, job["id"]))
        page.wait_for("document.querySelectorAll('#artifacts li button').length >= 4")
        assert page.evaluate("location.hash") == f"#job={job['id']}"
        stored = page.evaluate("sessionStorage.getItem('adaprune.apiKey')")
        assert stored == deployment.key
        page.evaluate(
            "document.querySelector('#artifacts li[data-name=\"steps.csv\"] button').click()"
        )
        saved = downloads / "steps.csv"
        wait_until(
            lambda: saved if saved.is_file() and saved.stat().st_size else None,
            what="the downloaded steps.csv",
            timeout_s=30,
        )
    url = f"{deployment.api_url}/v1/jobs/{job['id']}/artifacts/steps.csv"
    assert httpx.get(url, timeout=10).status_code == 401  # only a request with the key gets it
    with deployment.client() as client:
        assert saved.read_bytes() == client.get(url).raise_for_status().content
