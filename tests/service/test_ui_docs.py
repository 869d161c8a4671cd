"""/ui and /docs are served whole by the API: every asset they reference is local and answers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from fastapi.testclient import TestClient

from service.routes.ui import CONTENT_SECURITY_POLICY
from service.ui import ASSETS, asset

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "service", "workers", "cli")


class References(HTMLParser):
    """The URLs an HTML page loads: script src, link href, img src."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (tag, name) in {("script", "src"), ("link", "href"), ("img", "src")}:
                self.urls.append(value)


def _assert_self_contained(api: TestClient, path: str) -> list[str]:
    page = api.get(path)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page.text, flags=re.I), (
        f"{path} names another host"
    )
    urls = References(page.text).urls
    assert urls, f"{path} references no assets"
    for url in urls:
        if url.startswith("data:"):
            continue
        assert url.startswith("/"), f"{path}: {url} is not served by this API"
        assert api.get(url).status_code == 200, f"{path}: {url} is not served"
    return urls


def test_docs_and_redoc_load_only_assets_the_api_serves(api: TestClient) -> None:
    docs = _assert_self_contained(api, "/docs")
    assert any(url.endswith("swagger-ui-bundle.js") for url in docs)
    assert any(url.endswith("swagger-ui.css") for url in docs)
    redoc = _assert_self_contained(api, "/redoc")
    assert any(url.endswith("redoc.standalone.js") for url in redoc)
    assert "/openapi.json" in api.get("/docs").text
    assert api.get("/openapi.json").status_code == 200


def test_ui_page_and_assets_are_served_with_a_same_origin_policy(api: TestClient) -> None:
    urls = _assert_self_contained(api, "/ui")
    assert set(urls) >= {"/ui/app.js", "/ui/style.css"}
    for path, media in (("/ui", "text/html"), ("/ui/app.js", "text/javascript")):
        response = api.get(path)
        assert response.headers["content-type"].startswith(media)
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY


def test_ui_script_never_parses_api_text_as_html() -> None:
    script = asset("app.js").decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, f"app.js uses {sink}"
    assert "textContent" in script and "createTextNode" in script
    # The page holds no inline script: the policy would block it.
    assert re.search(r"<script(?![^>]*\bsrc=)", asset("index.html").decode()) is None


def test_the_wheel_ships_the_page_and_depends_on_the_docs_assets(tmp_path: Path) -> None:
    # Built from a copy, so that setuptools' build/ and egg-info stay out of the checkout.
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*pip_wheel, "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("adaprune-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = archive.read(metadata).decode()
    assert {f"service/ui/{name}" for name in ASSETS} <= names
    assert "Requires-Dist: fastapi-offline" in requires
