"""The database behind a command: the embedded SQLite is migrated on first use; an external
DATABASE_URL must already be migrated (`adaprune migrate`), and the command says so otherwise."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from cli.errors import UserError
from service.settings import SharedSettings


def safe_url(url: str) -> str:
    """`url` with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def schema_revisions(database_url: str) -> tuple[str | None, str]:
    """(the database's Alembic revision or None when unmigrated, the packaged head revision).

    Raises:
        UserError: the database cannot be reached.
    """
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from service.db.migrate import alembic_config
    from service.db.session import make_engine

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as error:
        raise UserError(
            f"cannot reach the database at {safe_url(database_url)}: {describe_db_error(error)}"
        ) from error
    finally:
        engine.dispose()
    return current, str(head)


def describe_db_error(error: SQLAlchemyError) -> str:
    """A database error in one line, the driver's first line without SQLAlchemy's SQL text."""
    cause = getattr(error, "orig", None) or error
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


def ready_database(settings: SharedSettings) -> str:
    """The database URL of `settings`, ready for use.

    The embedded SQLite (no DATABASE_URL) is created and brought to the latest schema; an
    external database is only checked.

    Raises:
        UserError: an external database is unreachable or not at the latest schema.
    """
    url = settings.database_url
    current, head = schema_revisions(url)
    if current == head:
        return url
    if settings.database_url_env is None:
        from service.db.migrate import upgrade

        upgrade(url)
        return url
    state = "has no schema yet" if current is None else f"is at schema {current}, not {head}"
    raise UserError(
        f"the database at {safe_url(url)} {state}; run `adaprune migrate` (with the same "
        "DATABASE_URL) first"
    )
