"""Headless Chromium for the web page's tests: the DOM after the page ran, and screenshots.

Every run gets a fresh profile, and a host resolver that knows only 127.0.0.1, so a page that
asked for an asset on another host would find it missing, as it would offline.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import unavailable

CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
# Virtual time runs the page's timers (its 2 s polling) and waits for its requests.
DEFAULT_BUDGET_MS = 8000


def chromium() -> str:
    """The chromium executable; skip locally, fail under CI=true, when there is none."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    unavailable("chromium (scripts/setup.sh installs Debian's package)")


def _run(
    url: str, *extra: str, budget_ms: int, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="adaprune-chromium-") as profile:
        argv = [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            url,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise AssertionError(f"chromium exited with {done.returncode}:\n{done.stderr[-3000:]}")
    return done


def dump_dom(url: str, *, budget_ms: int = DEFAULT_BUDGET_MS, timeout_s: float = 90) -> str:
    """The serialised DOM of `url` once its scripts ran for `budget_ms` of virtual time."""
    return _run(url, "--dump-dom", budget_ms=budget_ms, timeout_s=timeout_s).stdout


def screenshot(
    url: str,
    path: Path,
    *,
    size: tuple[int, int] = (1440, 1000),
    budget_ms: int = DEFAULT_BUDGET_MS,
    timeout_s: float = 90,
) -> Path:
    """Save a PNG of `url` at `size` (width, height) after `budget_ms` of virtual time."""
    _run(
        url,
        f"--screenshot={path}",
        f"--window-size={size[0]},{size[1]}",
        "--hide-scrollbars",
        budget_ms=budget_ms,
        timeout_s=timeout_s,
    )
    if not path.is_file():
        raise AssertionError(f"chromium wrote no screenshot at {path}")
    return path
