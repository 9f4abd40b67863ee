"""Errors the SDK raises or records.

::

    CmcClientError
    ├── OutboxError                 the outbox file cannot be opened, read or written
    ├── DuplicateTransactionError   one transactionId, two different tenders
    ├── InvalidTenderError          the tender breaks the contract (also a ValueError)
    ├── TransientError              network, 5xx, 429: retried later (never raised by post_tender)
    └── AuthenticationError         CMC refused the credentials (never raised by post_tender)

``post_tender`` raises only :class:`OutboxError` (the tender could not be made durable) and
:class:`DuplicateTransactionError` and :class:`InvalidTenderError` (programming errors);
every delivery problem becomes a result instead. ``settings()`` and ``verify()``, which need an answer
from CMC, raise :class:`TransientError` and :class:`AuthenticationError`.
"""

from __future__ import annotations


class CmcClientError(Exception):
    """Something went wrong in the CMC client SDK."""


class OutboxError(CmcClientError):
    """The outbox file is corrupt, unreadable or unwritable; no tender can be kept safely."""


class DuplicateTransactionError(CmcClientError):
    """This transactionId is already in the outbox with a different tender body."""


class TransientError(CmcClientError):
    """A failure that retrying may fix: network error, 5xx or 429.

    ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthenticationError(CmcClientError):
    """CMC refused the client credentials (or answered 401 right after a fresh token)."""


class InvalidTenderError(CmcClientError, ValueError):
    """The tender breaks the wire contract (a required field missing, a value too long...)."""
