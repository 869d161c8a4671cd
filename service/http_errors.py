"""One error shape for every failed request.

`{"error": {"code": ..., "message": ..., "field": ...?, "details": [...]?}}`
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.contract.errors import AdapruneError, ErrorCode
from service.errors import (
    AuthenticationFailed,
    EnqueueFailed,
    IdempotencyConflict,
    InvalidCursor,
    InvalidKey,
    JobNotFound,
    QuotaExceeded,
    ServiceError,
)
from service.schemas import ErrorBody, ErrorDetail, ErrorInfo

STATUS_OF: dict[type[ServiceError], int] = {
    AuthenticationFailed: 401,
    JobNotFound: 404,
    IdempotencyConflict: 409,
    QuotaExceeded: 429,
    InvalidCursor: 400,
    InvalidKey: 400,
    EnqueueFailed: 503,
}
CODE_OF_STATUS: dict[int, ErrorCode] = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    422: "validation_error",
}
BEARER = {"WWW-Authenticate": 'Bearer realm="adaprune"'}

log = logging.getLogger(__name__)


class ApiError(AdapruneError):
    """An HTTP error with the service's error body."""

    def __init__(
        self,
        status: int,
        *,
        code: ErrorCode,
        message: str,
        field: str | None = None,
        details: Sequence[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.body = ErrorBody(
            error=ErrorInfo(
                code=code,
                message=message,
                field=field,
                details=list(details) if details is not None else None,
            )
        )
        self.headers = dict(headers or {})


def error_response(
    status: int, *, code: ErrorCode, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON response in the error shape (for places that cannot raise ApiError)."""
    body = ErrorBody(error=ErrorInfo(code=code, message=message))
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, headers=headers)


def field_path(loc: Sequence[Any]) -> str:
    """Dotted field path of a validation error location, without the leading "body"."""
    parts = [str(part) for part in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_error(details: Sequence[ErrorDetail]) -> ApiError:
    """A 422 naming every bad field; the first one is also the error's `field`."""
    first = details[0]
    return ApiError(
        422,
        code="validation_error",
        message=f"{first.field}: {first.message}",
        field=first.field,
        details=details,
    )


def _api_error(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, ApiError):
        raise error
    return JSONResponse(
        error.body.model_dump(exclude_none=True), status_code=error.status, headers=error.headers
    )


def _service_error(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, ServiceError):
        raise error
    status = next((s for kind, s in STATUS_OF.items() if isinstance(error, kind)), 500)
    headers = BEARER if isinstance(error, AuthenticationFailed) else None
    return error_response(status, code=error.code, message=str(error), headers=headers)


def _request_validation(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, RequestValidationError):
        raise error
    details = [
        ErrorDetail(
            code=str(item.get("type", "invalid")),
            message=item["msg"],
            field=field_path(item["loc"]),
        )
        for item in error.errors()
    ]
    return _api_error(_request, validation_error(details))


def _http_exception(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, StarletteHTTPException):
        raise error
    code = CODE_OF_STATUS.get(error.status_code, "http_error")
    return error_response(
        error.status_code, code=code, message=str(error.detail), headers=error.headers
    )


def _database_down(_request: Request, error: Exception) -> JSONResponse:
    return error_response(
        503, code="database_unavailable", message=f"database unavailable: {type(error).__name__}"
    )


def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # The client learns nothing of the cause (paths, SQL, driver messages): the log has it.
    log.error(
        "unhandled %s on %s %s",
        type(error).__name__,
        request.method,
        request.url.path,
        exc_info=error,
    )
    return error_response(500, code="internal_error", message="internal error")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error the API raises to the one JSON error shape.

    Anything unexpected becomes `500 internal_error` with no detail; the traceback is logged.
    """
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    for kind in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(kind, _database_down)
    app.add_exception_handler(Exception, _unexpected)
