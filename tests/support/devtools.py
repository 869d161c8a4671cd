"""Headless Chromium driven through the DevTools protocol: navigate, evaluate, download.

For what `--dump-dom` cannot do: clicking, reading session storage, receiving a download.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tests.support.browser import CHROMIUM_FLAGS, chromium

LISTENING = re.compile(r"DevTools listening on (ws://\S+)")


class DevTools:
    """One websocket session (the browser's or a page's) that sends commands and awaits replies."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, timeout_s: float = 30, **params: Any) -> dict[str, Any]:
        """Send one command; return its result (events that arrive meanwhile are dropped)."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout_s
        while True:
            reply = json.loads(self._socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if reply.get("id") != message_id:
                continue
            if "error" in reply:
                raise AssertionError(f"{method} failed: {reply['error']}")
            result: dict[str, Any] = reply.get("result", {})
            return result

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page (promises are awaited)."""
        result = self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout_s: float = 30) -> Any:
        """Evaluate `expression` until it is truthy; return that value."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression!r} still {value!r} after {timeout_s}s")
            time.sleep(0.2)


def _listening_url(process: subprocess.Popen[str], timeout_s: float) -> str:
    found: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            match = LISTENING.search(line)
            if match:
                found.append(match.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        raise AssertionError(f"chromium did not open its DevTools port in {timeout_s}s")
    return found[0]


@contextmanager
def browser_page(download_dir: Path, *, timeout_s: float = 60) -> Iterator[DevTools]:
    """A blank page in a fresh headless Chromium whose downloads land in `download_dir`."""
    with tempfile.TemporaryDirectory(prefix="adaprune-chromium-") as profile:
        process = subprocess.Popen(
            [
                chromium(),
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            browser_url = _listening_url(process, timeout_s)
            port = int(browser_url.split(":")[2].split("/")[0])
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            with (
                connect(browser_url, max_size=None) as browser_socket,
                connect(page_url, max_size=None) as page_socket,
            ):
                DevTools(browser_socket).call(
                    "Browser.setDownloadBehavior", behavior="allow", downloadPath=str(download_dir)
                )
                yield DevTools(page_socket)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
