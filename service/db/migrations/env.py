"""Alembic environment: runs migrations on the connection or URL that service.db.migrate gives."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from service.db.models import Base
from service.db.session import make_engine


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the given connection, or an engine built from the configured URL."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(context.config.attributes["database_url"])
    try:
        with engine.connect() as fresh:
            _run(fresh)
            fresh.commit()
    finally:
        engine.dispose()


run_migrations_online()
