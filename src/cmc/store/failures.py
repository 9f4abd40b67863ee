"""What a database failure means for the caller: try again shortly, or a bug (pure classification).

Both execution paths raise their own classes (the driver path ``StoreError``s, the Core path
SQLAlchemy's); the HTTP layer asks here instead of knowing either.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from cmc.errors import Contention, StoreError, StoreUnavailable

CONTENDED = frozenset({"40001", "40P01", "55P03", "SQLITE_BUSY", "SQLITE_LOCKED"})
"""A transaction that lost to another one (PostgreSQL's serialization failure, deadlock, lock not
available; SQLite's busy or locked database): the same work may succeed if tried again. The driver
path raises ``Contention`` for these; the Core path's SQLAlchemy errors carry the code."""

TIMED_OUT = "timeout"
"""The code of a driver statement that got no answer within its timeout (``StoreUnavailable``): the
connection may be half-open, so it is dropped, and the unit is not retried on the spot."""


def is_transient(exc: BaseException) -> bool:
    """Contention or a lost connection: the same request may succeed if sent again (503)."""
    if isinstance(exc, Contention | StoreUnavailable | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and (exc.connection_invalidated or code(exc) in CONTENDED)


def is_database_error(exc: BaseException) -> bool:
    """Any other failure of the store."""
    return isinstance(exc, StoreError | SQLAlchemyError)


def code(exc: BaseException) -> str | None:
    """The SQLSTATE (or SQLite error name) of ``exc``: safe to log, unlike its message."""
    if isinstance(exc, StoreError):
        return exc.code
    original = getattr(exc, "orig", None)
    found = getattr(original, "sqlstate", None) or getattr(original, "sqlite_errorname", None)
    return None if found is None else str(found)
