"""Console sessions ended by signing out: each one's token, by digest, until it would expire anyway.

A console session is its signed user token, checked against the registry on every request (no session
table). Clearing the cookie at logout ends it in that browser only; a copy of the cookie taken before
would work until the token expires. So logout also records the token here, and ``Tokens.verify``
refuses a user token found here, in every process. Rows outlive nothing: once a token has expired it
is refused anyway, and ``cmc prune`` removes its row.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, insert, select
from sqlalchemy.exc import IntegrityError

from cmc.store import tables

_t = tables.signed_out_tokens


def digest(token: str) -> str:
    """What is stored of a token: enough to recognise it, nothing to sign in with."""
    return hashlib.sha256(token.encode()).hexdigest()


def record(conn: Connection, token: str, *, expires_at: datetime) -> None:
    """The session behind ``token`` has ended (signing out twice is signing out once)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(_t).values(digest=digest(token), expires_at=expires_at))
    except IntegrityError:
        pass


def is_signed_out(conn: Connection, token: str) -> bool:
    """Whether ``token``'s session was ended by signing out."""
    return conn.execute(select(_t.c.digest).where(_t.c.digest == digest(token))).first() is not None


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """Tokens that expired before ``before`` (for ``cmc prune``): they are refused as expired anyway."""
    return [(_t.c.digest, _t.c.expires_at < before)]
