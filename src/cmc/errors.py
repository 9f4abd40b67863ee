"""One error tree for the whole service; each HTTP-facing error knows its status.

    CmcError
    ├── ConfigError                  bad CMC_* setting (start-up)
    ├── RegistryError                bad registry file (``cmc apply``), names line and field
    ├── DeliveryFailed               an email/SMS attempt failed (``cmc.outbox.senders``)
    │   ├── TemporaryFailure         retried with backoff
    │   └── PermanentFailure         the message is dead
    │       └── Bounced              the address refused it for good: the message is bounced
    ├── StoreError                   the database failed a unit of work (``cmc.store.driver``)
    │   ├── DuplicateKey             a unique key already holds the value: a race the caller settles
    │   ├── Contention               deadlock, serialization failure or a held lock: retried
    │   └── StoreUnavailable         the connection was lost or refused: retried, then 503
    └── ApiError                     answered as RFC 9457 problem details
        ├── BadRequest          400
        │   ├── MalformedJson
        │   ├── ValidationFailed     per-field ``errors``
        │   └── SessionMismatch      terminal/location differ from the session's
        ├── Unauthorized        401  (with ``WWW-Authenticate: Bearer``)
        ├── Forbidden           403
        ├── NotFound            404
        │   ├── TerminalNotFound
        │   ├── LocationNotFound
        │   ├── SessionNotFound
        │   ├── TransactionNotFound
        │   ├── VersionNotFound      a company's marketing version
        │   └── RouteNotFound
        ├── MethodNotAllowed    405
        ├── Conflict            409
        │   ├── SessionAlreadyUsed
        │   ├── TransactionConflict  same transactionId, different body
        │   └── VersionUnfit         a version names what the registry no longer has
        ├── Gone                410
        │   └── SessionExpired
        ├── PreconditionFailed  412  stale ``If-Match``
        ├── PayloadTooLarge     413
        ├── UnsupportedMediaType 415
        ├── IdempotencyKeyReused 422  same ``Idempotency-Key``, different request
        ├── PreconditionRequired 428  ``If-Match`` missing
        ├── TooManyRequests     429  (with ``Retry-After``)
        └── ServiceUnavailable  503  (with ``Retry-After``)
            └── NotReady             the store does not answer (``/ready``)

A class's docstring is its default message. Routes never catch these: the problem-details handler
in ``cmc.api.problems`` turns them into responses.
"""

from __future__ import annotations


class CmcError(Exception):
    """Something went wrong in CMC."""

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or (self.__doc__ or "").strip().splitlines()[0]
        super().__init__(self.detail)


class ConfigError(CmcError):
    """A CMC_* setting is invalid."""


class RegistryError(CmcError):
    """The registry file is invalid; nothing was applied."""


class StoreError(CmcError):
    """The database could not complete the unit of work."""

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.code = code
        """SQLSTATE (or SQLite's error name): safe to log, unlike the driver's message."""


class DuplicateKey(StoreError):
    """A unique key already holds this value."""


class Contention(StoreError):
    """Another transaction held what this one needed (deadlock, serialization failure, lock)."""


class StoreUnavailable(StoreError):
    """The database connection was lost or refused."""


class ApiError(CmcError):
    """The request failed."""

    status: int = 500
    title: str = "Internal Server Error"
    slug: str = "internal"
    headers: dict[str, str] = {}

    def __init__(self, detail: str | None = None, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors


class BadRequest(ApiError):
    """The request is invalid."""

    status, title, slug = 400, "Bad Request", "bad-request"


class MalformedJson(BadRequest):
    """The body is not valid JSON."""

    slug = "malformed-json"


class ValidationFailed(BadRequest):
    """One or more fields are invalid."""

    slug = "validation"

    @classmethod
    def from_msgspec(cls, exc: Exception) -> ValidationFailed:
        """From msgspec's ``Expected `str`, got `int` - at `$.customer.id` `` to a per-field error."""
        message, _, where = str(exc).rpartition(" - at `")
        if not message:
            message, where = str(exc), "$`"
        path = where.rstrip("`").removeprefix("$").removeprefix(".")
        missing = "missing required field `"
        if missing in message:
            name = message.split(missing, 1)[1].rstrip("`")
            path = f"{path}.{name}" if path else name
            message = "is required"
        return cls(errors={path or "$": [message]})


class SessionMismatch(BadRequest):
    """The terminal or location does not match the session's."""

    slug = "session-mismatch"


class Unauthorized(ApiError):
    """A valid Bearer token is required."""

    status, title, slug = 401, "Unauthorized", "unauthorized"
    headers = {"WWW-Authenticate": 'Bearer realm="cmc"'}


class InvalidClient(Unauthorized):
    """Unknown client or wrong secret."""

    slug = "invalid-client"
    headers = {"WWW-Authenticate": 'Basic realm="cmc"'}


class Forbidden(ApiError):
    """This token may not act for this POS system."""

    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(ApiError):
    """Not found."""

    status, title, slug = 404, "Not Found", "not-found"


class RouteNotFound(NotFound):
    """No such endpoint."""


class TerminalNotFound(NotFound):
    """Terminal Not Found: the terminal is not registered at this location."""

    slug = "terminal-not-found"


class LocationNotFound(NotFound):
    """The location is not registered for this POS system."""

    slug = "location-not-found"


class SessionNotFound(NotFound):
    """Unknown sessionId: call startInteraction first."""

    slug = "session-not-found"


class TransactionNotFound(NotFound):
    """CMC has no such transaction."""

    slug = "transaction-not-found"


class VersionNotFound(NotFound):
    """This company has no such marketing version."""

    slug = "version-not-found"


class MethodNotAllowed(ApiError):
    """This endpoint does not accept that method."""

    status, title, slug = 405, "Method Not Allowed", "method-not-allowed"


class Conflict(ApiError):
    """The request conflicts with what CMC already holds."""

    status, title, slug = 409, "Conflict", "conflict"


class SessionAlreadyUsed(Conflict):
    """The session already carried another transaction; start a new interaction."""

    slug = "session-used"


class TransactionConflict(Conflict):
    """This transactionId was already sent with a different body."""

    slug = "transaction-conflict"


class VersionUnfit(Conflict):
    """The version names locations, widgets or templates the company no longer has."""

    slug = "version-unfit"


class Gone(ApiError):
    """No longer available."""

    status, title, slug = 410, "Gone", "gone"


class SessionExpired(Gone):
    """The session has expired; start a new interaction and resend with the same transactionId."""

    slug = "session-expired"


class PreconditionFailed(ApiError):
    """If-Match names a version that is no longer the active one."""

    status, title, slug = 412, "Precondition Failed", "precondition-failed"


class PayloadTooLarge(ApiError):
    """The body is larger than the limit."""

    status, title, slug = 413, "Payload Too Large", "payload-too-large"


class UnsupportedMediaType(ApiError):
    """Send the body as application/json."""

    status, title, slug = 415, "Unsupported Media Type", "unsupported-media-type"


class IdempotencyKeyReused(ApiError):
    """This Idempotency-Key was already used for a different request."""

    status, title, slug = 422, "Unprocessable Content", "idempotency-key-reused"


class PreconditionRequired(ApiError):
    """Send If-Match with the active version's ETag (GET .../marketing answers it)."""

    status, title, slug = 428, "Precondition Required", "precondition-required"


class TooManyRequests(ApiError):
    """Too many requests: try again later."""

    status, title, slug = 429, "Too Many Requests", "too-many-requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(ApiError):
    """CMC cannot answer right now; try again shortly."""

    status, title, slug = 503, "Service Unavailable", "unavailable"
    headers = {"Retry-After": "1"}


class NotReady(ServiceUnavailable):
    """The store is not reachable."""

    slug = "not-ready"
