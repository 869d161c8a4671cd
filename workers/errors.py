"""Infrastructure errors: the only errors a job is retried for."""

from __future__ import annotations

import errno
import os
import re

import redis.exceptions
import sqlalchemy.exc

from core.contract.errors import AdapruneError, ErrorCode


class InfrastructureError(AdapruneError):
    """A backing service (database, broker, artifact storage) did not answer."""

    code: ErrorCode = "infrastructure_unavailable"


class StorageUnavailable(InfrastructureError):
    """The artifact storage could not be read or written."""

    code = "storage_unavailable"


class RetryAttempt(AdapruneError):
    """An attempt of `job_id` stopped on an infrastructure error and is to be retried later.

    The task re-sends `job_id`, the job that ran: with fair dispatch it may be another job than
    the one the message named (`workers.fairness`), and re-sending the message's own id would
    leave the job that failed leased and waiting for a reaper, and count its retries against
    another job.
    """

    code: ErrorCode = "infrastructure_unavailable"

    def __init__(self, job_id: str, error: Exception) -> None:
        super().__init__(f"job {job_id}: {type(error).__name__}: {error}")
        self.job_id = job_id
        self.error = error
        # the code of the error that stopped it, as a final failure would record it
        self.code = infra_code(error)


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


# How Rust's io::Error shows its errno, in errors of Rust-backed libraries (safetensors).
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def _errno_of(error: BaseException) -> int | None:
    if isinstance(error, OSError):
        return error.errno
    match = _RUST_OS_ERROR.search(str(error))
    return int(match[1]) if match else None


def disk_error(error: BaseException) -> StorageUnavailable | None:
    """`error` (or an error it was raised from) as a StorageUnavailable when it is a local
    disk failure (full, over quota, read-only, failing), else None."""
    seen: BaseException | None = error
    for _ in range(8):  # the chain of causes, bounded
        if seen is None:
            break
        number = _errno_of(seen)
        if number in DISK_ERRNOS:
            return StorageUnavailable(f"local disk: {os.strerror(number or 0)}")
        seen = seen.__cause__ or seen.__context__
    return None
