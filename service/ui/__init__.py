"""The web page at /ui: static HTML, JavaScript and CSS shipped inside this package.

The page talks to the public API with the user's key, like any other client; nothing here is
rendered on the server, so no job-provided text ever reaches the page as markup.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

# file name -> media type; the only files the page is made of
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@cache
def asset(name: str) -> bytes:
    """The bytes of one of the page's files (read from the installed package once).

    Raises:
        KeyError: `name` is not one of ASSETS.
    """
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files(__name__).joinpath(name).read_bytes()
