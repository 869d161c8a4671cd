"""What a job's stored error may say: never the store's own text (SQL, parameters, drivers).

A job's error is shown to its tenant; a store error's text carries the statement, its bound
values and the driver's names. `tenant_safe` keeps the message's own words and drops those.
"""

from __future__ import annotations

import re

# SQLAlchemy appends these to a driver error's text; everything from them on is the store's.
_STORE_TAIL = re.compile(r"\s*\[(?:SQL|parameters):|\s*\(Background on this error at:")
# "(sqlite3.IntegrityError) ..." / "(psycopg.errors.NotNullViolation) ...": the driver's class.
_DRIVER_PREFIX = re.compile(r"\((?:sqlite3|psycopg2?|asyncpg)[\w.]*\)\s*")
STORE_REFUSED = "the results store refused a write for this job"


def tenant_safe(message: str | None) -> str | None:
    """`message` without SQL, bound parameters or driver names (None stays None).

    A message that is nothing but the store's text becomes STORE_REFUSED.
    """
    if message is None:
        return None
    tail = _STORE_TAIL.search(message)
    text = message[: tail.start()] if tail is not None else message
    driver = _DRIVER_PREFIX.search(text)
    if tail is not None or driver is not None:
        # Whatever the driver said about the statement (constraint and column names included)
        # stays in the worker's log.
        head = text[: driver.start()] if driver is not None else text.split(":", 1)[0]
        head = head.strip().rstrip(":").strip()
        return f"{head}: {STORE_REFUSED}" if head and " " not in head else STORE_REFUSED
    return text
