"""Engines and sessions: SQLite gets WAL, a busy timeout and foreign keys; PostgreSQL psycopg."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.settings import normalize_database_url

SQLITE_BUSY_TIMEOUT_MS = 15_000
PG_CONNECT_TIMEOUT_S = 5


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL stays consistent after any crash with NORMAL; FULL fsyncs every commit, which
    # serialises job submissions (docs/benchmarks.md, "api"); only a power loss can undo the
    # last commits.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def private_sqlite_file(path: Path) -> None:
    """Create the SQLite file `path` (and its directory) readable by its owner alone.

    SQLite gives the -wal and -shm files the database file's mode, so they are 0600 too; a
    file left readable by others by an older install is narrowed to 0600.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


def make_engine(database_url: str) -> Engine:
    """Build an engine for a SQLite or PostgreSQL URL.

    Args:
        database_url: `sqlite:///path`, `postgresql+psycopg://...` (plain `postgresql://` is
            mapped to psycopg).

    Returns:
        An engine whose connections are checked before use; SQLite connections run in WAL mode
        with a busy timeout and foreign keys enforced; the file and its directory are created,
        the file 0600 (`private_sqlite_file`).
    """
    url = make_url(normalize_database_url(database_url))
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            private_sqlite_file(Path(url.database).expanduser())
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(
        url, pool_pre_ping=True, connect_args={"connect_timeout": PG_CONNECT_TIMEOUT_S}
    )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (they are handed to callers)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with sessions() as session, session.begin():
        yield session
