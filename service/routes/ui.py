"""The web page: /ui and its two assets, with a policy that lets it load nothing else."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from service.ui import ASSETS, asset

router = APIRouter(tags=["ui"], include_in_schema=False)

# Scripts, styles and requests only from this origin, no inline script, no frames: a job's text
# that slipped into markup could not run, and the page cannot reach any other host.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _serve(name: str) -> Response:
    return Response(asset(name), media_type=ASSETS[name], headers=HEADERS)


@router.get("/ui")
def page() -> Response:
    """The page: jobs, a job's curve, events and artifacts (the API key is pasted in it)."""
    return _serve("index.html")


@router.get("/ui/app.js")
def script() -> Response:
    """The page's script."""
    return _serve("app.js")


@router.get("/ui/style.css")
def style() -> Response:
    """The page's style sheet."""
    return _serve("style.css")
