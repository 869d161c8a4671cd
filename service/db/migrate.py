"""Run the packaged Alembic migrations programmatically (`adaprune migrate` and the tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from service.settings import normalize_database_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database.

    The URL travels in `Config.attributes`, not the ini options, so passwords with `%` survive.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = normalize_database_url(database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database schema up to `revision` (default: the latest).

    Args:
        database_url: SQLite or PostgreSQL URL; a plain `postgresql://` URL is mapped to psycopg.
        revision: the Alembic revision to reach.
    """
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    """Take the database schema down to `revision` (default: empty)."""
    command.downgrade(alembic_config(database_url), revision)
