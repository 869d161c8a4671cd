"""ASGI middleware: a request body size cap, and request metrics by route template."""

from __future__ import annotations

import re
import time

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http_errors import error_response
from service.metrics import ApiMetrics

UNMATCHED = "unmatched"
# Specs nest about five levels deep; json and pydantic recurse, so deeper bodies are refused
# before they are parsed.
MAX_JSON_DEPTH = 32
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in `body` (0 for a scalar; strings are skipped).

    Args:
        body: raw JSON text; it need not be valid JSON.

    Returns:
        The largest number of brackets open at once outside string literals.
    """
    brackets = _NOT_BRACKET.sub(b"", _JSON_STRING.sub(b"", body))
    depth = deepest = 0
    for byte in brackets:
        depth += 1 if byte in b"[{" else -1
        deepest = max(deepest, depth)
    return deepest


class BodyLimitMiddleware:
    """Answers 413 before any parsing when a body is larger than `max_bytes`, and 400 when it
    nests deeper than MAX_JSON_DEPTH or declares a Content-Length that is not a number.

    Content-Length is checked first; the body is then read (counting the bytes actually sent,
    which also covers chunked uploads) and replayed to the application.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            response = error_response(
                400, code="bad_request", message="Content-Length must be a whole number of bytes"
            )
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if json_depth(body) > MAX_JSON_DEPTH:
            response = error_response(
                400,
                code="body_too_deep",
                message=f"request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels",
            )
            await response(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, code="body_too_large", message=f"request body exceeds {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


class MetricsMiddleware:
    """Counts requests and times them, labelled by route template (never by raw path)."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.requests.labels(route=route, method=method, status=str(status)).inc()
            self.metrics.duration.labels(route=route, method=method).observe(
                time.perf_counter() - started
            )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    # Requests refused before routing (e.g. 413) are matched here so they keep their template.
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", []):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", UNMATCHED))
    return UNMATCHED
