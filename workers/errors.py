"""Infrastructure errors: the only errors a job is retried for."""

from __future__ import annotations

import errno

import redis.exceptions
import sqlalchemy.exc

from core.contract.errors import AdapruneError, ErrorCode


class InfrastructureError(AdapruneError):
    """A backing service (database, broker, artifact storage) did not answer."""

    code: ErrorCode = "infrastructure_unavailable"


class StorageUnavailable(InfrastructureError):
    """The artifact storage could not be read or written."""

    code = "storage_unavailable"


# Connection-level failures of the database and Redis; a bad query or a bad spec is not here.
INFRA_ERRORS: tuple[type[Exception], ...] = (
    InfrastructureError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
)


# The database's share of INFRA_ERRORS: what a store write is retried for in place.
DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def infra_code(error: BaseException) -> ErrorCode:
    """The error code a job gets when `error` outlasted its retries."""
    if isinstance(error, InfrastructureError):
        return error.code
    if isinstance(error, sqlalchemy.exc.SQLAlchemyError):
        return "database_unavailable"
    return "broker_unavailable"


def one_line(error: BaseException | str, *, limit: int = 500) -> str:
    """`error` as one line of at most `limit` characters, for the job's error_message."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# A local disk that is full, over quota, read-only or failing: the storage's fault, not the
# job's; another worker (or this one, later) can run the job.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def disk_error(error: BaseException) -> StorageUnavailable | None:
    """`error` as a StorageUnavailable when it is a local disk failure, else None."""
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return StorageUnavailable(f"local disk: {error.strerror or error}")
    return None
