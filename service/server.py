"""How `adaprune api` serves the app: uvicorn on h11 with connection limits from ApiSettings.

uvicorn bounds idle keep-alive connections, concurrent requests and header size; it does not
bound how long a client may take to send its request head, or how many connections it holds
open. `GuardedH11Protocol` adds both: a connection beyond `max_connections` is answered 503 and
closed at once, and one whose request head is not complete within `header_timeout_s` is answered
408 and closed. The body's own deadline is the BodyLimitMiddleware's (`body_timeout_s`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from service.settings import ApiSettings

_CLOSE = b"\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: "


def _raw_response(status: str, text: str) -> bytes:
    body = text.encode()
    return b"HTTP/1.1 " + status.encode() + _CLOSE + str(len(body)).encode() + b"\r\n\r\n" + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and a deadline on each request head."""

    max_connections = 512
    header_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            # Refused before anything is parsed, so the file descriptor is freed at once.
            transport.write(_raw_response("503 Service Unavailable", "too many connections\n"))
            transport.close()
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:
            # A request head arrived: from here the body deadline and the app take over.
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            # The next request on this connection gets the same deadline for its head.
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:
            text = f"request head not received within {self.header_timeout_s:g} s\n"
            self.transport.write(_raw_response("408 Request Timeout", text))
        self.transport.close()


def guarded_protocol(settings: ApiSettings) -> type[GuardedH11Protocol]:
    """A GuardedH11Protocol class carrying `settings`' connection cap and head deadline."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "max_connections": settings.max_connections,
            "header_timeout_s": settings.header_timeout_s,
        },
    )


def server_config(
    app: Any, settings: ApiSettings, *, host: str, port: int, log_level: str
) -> uvicorn.Config:
    """The uvicorn configuration of `adaprune api` for `settings` (docs/service.md)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(settings),
        timeout_keep_alive=settings.keep_alive_s,
        # The cap itself is the protocol's; this bounds concurrent requests just above it.
        limit_concurrency=settings.max_connections + 1,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def serve(app: Any, settings: ApiSettings, *, host: str, port: int, log_level: str) -> None:
    """Serve `app` until a stop signal, with the limits of `settings`."""
    uvicorn.Server(server_config(app, settings, host=host, port=port, log_level=log_level)).run()
