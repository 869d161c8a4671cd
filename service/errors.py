"""The service's error hierarchy: one base class, subclasses named for what happened."""

from __future__ import annotations

from core.contract.errors import AdapruneError, ErrorCode


class ServiceError(AdapruneError):
    """Base class of every error the service raises on purpose."""

    code: ErrorCode = "service_error"


class JobNotFound(ServiceError):
    """No job with this id exists for this tenant."""

    code = "job_not_found"


class IdempotencyConflict(ServiceError):
    """The idempotency key was already used with a different request body."""

    code = "idempotency_conflict"


class QuotaExceeded(ServiceError):
    """The tenant already has as many active jobs as it may."""

    code = "quota_exceeded"


class InvalidCursor(ServiceError):
    """A pagination cursor could not be decoded."""

    code = "invalid_cursor"


class AuthenticationFailed(ServiceError):
    """The API key is missing, unknown or revoked."""

    code = "unauthenticated"


class EnqueueFailed(ServiceError):
    """The broker did not accept the job's message."""

    code = "enqueue_failed"


class InvalidKey(ServiceError, ValueError):
    """A storage key or artifact name is unsafe (absolute, '..', backslash, NUL)."""

    code = "invalid_key"
