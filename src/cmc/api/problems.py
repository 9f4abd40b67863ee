"""Every error becomes an RFC 9457 problem details response; nothing leaks a stack trace."""

from __future__ import annotations

import msgspec
import structlog
from litestar import Response
from litestar.exceptions import HTTPException

from cmc.api import HttpRequest
from cmc.errors import (
    ApiError,
    BadRequest,
    MethodNotAllowed,
    PayloadTooLarge,
    RouteNotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from cmc_client import wire

log = structlog.get_logger("cmc.api")
MEDIA_TYPE = "application/problem+json"
_encode = msgspec.json.Encoder().encode

_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: RouteNotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def problem_response(error: ApiError, *, instance: str | None = None) -> Response[bytes]:
    """The problem details response for ``error``."""
    problem = wire.Problem(
        type=f"urn:cmc:problem:{error.slug}",
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
        errors=error.errors,
    )
    return Response(_encode(problem), status_code=error.status, media_type=MEDIA_TYPE, headers=error.headers)


def handle_api_error(request: HttpRequest, exc: ApiError) -> Response[bytes]:
    """Domain errors carry their own status."""
    return problem_response(exc, instance=request.url.path)


def handle_http_exception(request: HttpRequest, exc: HTTPException) -> Response[bytes]:
    """Framework errors (unknown route, wrong method, body too large) in the same shape."""
    kind = _BY_STATUS.get(exc.status_code)
    if kind is None:
        kind = BadRequest if exc.status_code < 500 else ApiError
    error = kind()
    if exc.status_code not in _BY_STATUS:
        error.status = exc.status_code
    return problem_response(error, instance=request.url.path)


def handle_unexpected(request: HttpRequest, exc: Exception) -> Response[bytes]:
    """A bug: log it with the request id, answer a bare 500."""
    log.exception("unhandled error", path=request.url.path)
    return problem_response(ApiError("Internal error; it has been logged."), instance=request.url.path)
