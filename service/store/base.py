"""What every part of the store shares: the session factory and one-transaction helper."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.db.session import make_engine, make_sessionmaker, transaction


class StoreBase:
    """Holds the session factory; each public store method runs in its own short transaction."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @classmethod
    def from_url(cls, database_url: str) -> Self:
        """Build a store with its own engine for `database_url`."""
        return cls(make_sessionmaker(make_engine(database_url)))

    @property
    def engine(self) -> Engine:
        """The engine behind the sessions."""
        bind = self.sessions.kw["bind"]
        if not isinstance(bind, Engine):
            raise TypeError("the store's sessions are not bound to an engine")
        return bind

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """A session in one transaction, committed on success and rolled back on error."""
        with transaction(self.sessions) as session:
            yield session
