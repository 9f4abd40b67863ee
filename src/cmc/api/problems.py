"""Every error becomes an RFC 9457 problem details response; nothing leaks a stack trace or a contact.

- ``ApiError``s carry their own status.
- A store that is contended or unreachable (``Contention``, ``StoreUnavailable``, a dropped database
  connection on a Core path) is a 503 with ``Retry-After``: the request may be sent again as it is, and
  the SDK does so.
- Anything else is a bug: a 500, logged with the request id. A database error is logged by its class
  and SQLSTATE only, never its message or parameters: those quote row values (an email in a duplicate
  key, a name in an INSERT).
"""

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
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from cmc.store import failures
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


def problem_body(error: ApiError, *, instance: str | None = None) -> bytes:
    """The problem details JSON of ``error``."""
    problem = wire.Problem(
        type=f"urn:cmc:problem:{error.slug}",
        title=error.title,
        status=error.status,
        detail=error.detail,
        instance=instance,
        errors=error.errors,
    )
    return _encode(problem)


def problem_response(error: ApiError, *, instance: str | None = None) -> Response[bytes]:
    """The problem details response for ``error``."""
    body = problem_body(error, instance=instance)
    return Response(body, status_code=error.status, media_type=MEDIA_TYPE, headers=error.headers)


def as_api_error(exc: Exception, *, path: str) -> ApiError:
    """The error a client gets for ``exc`` (logged here when it is CMC's fault)."""
    if isinstance(exc, ApiError):
        return exc
    if failures.is_transient(exc):
        log.warning("store unavailable", path=path, error=type(exc).__name__, code=failures.code(exc))
        return ServiceUnavailable("The store is busy or unreachable; send the request again.")
    if failures.is_database_error(exc):
        log.error("database error", path=path, error=type(exc).__name__, code=failures.code(exc))
    else:
        log.exception("unhandled error", path=path)
    return ApiError("Internal error; it has been logged.")


def handle_api_error(request: HttpRequest, exc: ApiError) -> Response[bytes]:
    """Domain errors carry their own status."""
    return problem_response(exc, instance=request.url.path)


def from_http_exception(exc: HTTPException) -> ApiError:
    """A framework error (unknown route, wrong method, body too large) as ours."""
    kind = _BY_STATUS.get(exc.status_code)
    if kind is None:
        kind = BadRequest if exc.status_code < 500 else ApiError
    error = kind()
    if exc.status_code not in _BY_STATUS:
        error.status = exc.status_code
    return error


def handle_http_exception(request: HttpRequest, exc: HTTPException) -> Response[bytes]:
    """Framework errors in the same shape as ours."""
    return problem_response(from_http_exception(exc), instance=request.url.path)


def handle_unexpected(request: HttpRequest, exc: Exception) -> Response[bytes]:
    """Store trouble is a 503; a bug is a bare 500, logged with the request id."""
    return problem_response(as_api_error(exc, path=request.url.path), instance=request.url.path)
