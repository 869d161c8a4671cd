"""ASGI middleware: a request body size cap, and request metrics by route template."""

from __future__ import annotations

import asyncio
import time

from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http_errors import error_response, validation_error
from service.jsonbody import NotStrictJson, check_strict_json, json_depth
from service.metrics import ApiMetrics
from service.schemas import ErrorDetail

__all__ = ["MAX_JSON_DEPTH", "BodyLimitMiddleware", "MetricsMiddleware", "json_depth"]

UNMATCHED = "unmatched"
# Specs nest about five levels deep; json and pydantic recurse, so deeper bodies are refused
# before they are parsed.
MAX_JSON_DEPTH = 32


class BodyLimitMiddleware:
    """Answers before any parsing: 413 when a body is larger than `max_bytes`, 408 when it is
    not received within `timeout_s`, 400 when it nests deeper than MAX_JSON_DEPTH or declares a
    Content-Length that is not a number, and 422 when it is JSON only to a lenient parser.

    Content-Length is checked first; the body is then read (counting the bytes actually sent,
    which also covers chunked uploads) and replayed to the application. Every check on the body
    is linear in its size.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            response = error_response(
                400, code="bad_request", message="Content-Length must be a whole number of bytes"
            )
            await response(scope, receive, send)
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(self._read(receive), timeout=self.timeout_s)
        except TimeoutError:
            response = error_response(
                408,
                code="request_timeout",
                message=f"the request body was not received within {self.timeout_s:g} s",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        if body is None:
            await self._refuse(scope, receive, send)
            return
        refusal = _check_body(body, headers.get(b"content-type"))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it passes `max_bytes`."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, code="body_too_large", message=f"request body exceeds {self.max_bytes} bytes"
        )
        await response(scope, receive, send)


def _check_body(body: bytes, content_type: bytes | None) -> JSONResponse | None:
    """The refusal of a body that nests too deeply or is not strict JSON, else None."""
    if json_depth(body) > MAX_JSON_DEPTH:
        return error_response(
            400,
            code="body_too_deep",
            message=f"request body nests arrays/objects deeper than {MAX_JSON_DEPTH} levels",
        )
    if not body or (content_type is not None and b"json" not in content_type.lower()):
        return None
    try:
        check_strict_json(body)
    except NotStrictJson as error:
        refused = validation_error(
            [ErrorDetail(code="json_not_strict", message=error.message, field=error.field)]
        )
        return JSONResponse(refused.body.model_dump(exclude_none=True), status_code=refused.status)
    return None


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
