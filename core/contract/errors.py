"""The one list of error codes and the root of every error the project raises on purpose.

A job's `error.code`, an HTTP error body's `error.code` and an exception's `code` attribute
all come from `ErrorCode`; docs/service.md lists the same codes (a test compares them).
"""

from __future__ import annotations

from typing import Literal, get_args

ErrorCode = Literal[
    # the engine (core.errors)
    "pruning_error",
    "spec_invalid",
    "data_invalid",
    "model_load_failed",
    "training_diverged",
    "cancelled",
    "artifact_invalid",
    "checkpoint_invalid",
    "resource_limit",
    "unsupported_architecture",
    # the service (service.errors) and its HTTP layer
    "service_error",
    "job_not_found",
    "idempotency_conflict",
    "quota_exceeded",
    "invalid_cursor",
    "unauthenticated",
    "enqueue_failed",
    "invalid_key",
    "bad_request",
    "not_found",
    "method_not_allowed",
    "body_too_large",
    "body_too_deep",
    "request_timeout",
    "validation_error",
    "json_not_strict",
    "unknown_queue",
    "policy_violation",
    "unknown_parameter",
    "artifact_not_found",
    "artifact_missing",
    "not_ready",
    "http_error",
    "internal_error",
    # the worker and the lease (workers.errors, service.store.leases)
    "infrastructure_unavailable",
    "storage_unavailable",
    "database_unavailable",
    "broker_unavailable",
    "attempts_exhausted",
    # the client and the command line
    "invalid_job_id",
    "no_artifact",
    "checksum_mismatch",
    "usage_error",
]

ERROR_CODES: tuple[ErrorCode, ...] = get_args(ErrorCode)


def as_error_code(value: str, *, default: ErrorCode = "http_error") -> ErrorCode:
    """`value` when it is a known code, else `default` (for codes read from another process)."""
    for code in ERROR_CODES:
        if code == value:
            return code
    return default


class AdapruneError(Exception):
    """Root of every error raised on purpose; `code` says what happened, from `ErrorCode`."""

    code: ErrorCode = "internal_error"
