"""``Idempotency-Key`` on the merchant API's POSTs: every statement on ``idempotency_keys``.

A POST sent with a key has its answer stored under (company, caller, key), in the same database
transaction as what it changed; sending it again with the same key and the same request (method,
path, body, ``If-Match``) answers the stored answer again and changes nothing. The same key with a
different request is 422 (as the IETF ``Idempotency-Key`` draft says). Only successful answers are
kept: a refused request changed nothing, so its retry is simply decided again. Two retries racing on
two processes collide on the key: the loser runs again and answers the winner's stored answer.
``cmc prune`` removes keys older than its date.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, insert, select
from sqlalchemy.exc import IntegrityError

from cmc.errors import BadRequest, Conflict, IdempotencyKeyReused
from cmc.store import tables
from cmc.store.database import Database

HEADER = "Idempotency-Key"
MAX_LENGTH = 200
ATTEMPTS = 3
"""A unique-key collision (a racing retry, two drafts numbered at once) is settled on the next run."""

_t = tables.idempotency_keys
Transaction = Connection
"""What ``once``'s ``perform`` runs in: the one write transaction of the change and its stored answer."""


@dataclass(frozen=True)
class Answer:
    """A response as it is stored and replayed."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


@dataclass(frozen=True)
class Key:
    """One caller's key at one company, with the fingerprint of the request it came with."""

    pos_system_id: str
    company_id: str
    actor: str
    key: str
    request_hash: str
    """A digest of what makes two requests the same (method, path, body, ``If-Match``)."""


def key_of(
    header: str | None, *, pos_system_id: str, company_id: str, actor: str, parts: list[bytes]
) -> Key | None:
    """The key a request carries (None: none sent); ``parts`` are what makes two requests the same."""
    if header is None:
        return None
    value = header.strip()
    if not value or len(value) > MAX_LENGTH:
        raise BadRequest(
            f"{HEADER} must be 1 to {MAX_LENGTH} characters.",
            errors={HEADER: [f"1 to {MAX_LENGTH} characters"]},
        )
    digest = hashlib.sha256()
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)
    return Key(pos_system_id, company_id, actor, value, digest.hexdigest())


async def once(
    db: Database, key: Key | None, perform: Callable[[Connection], Answer], *, now: datetime
) -> Answer:
    """``perform`` in one write transaction, its answer stored under ``key`` in it; a repeat replays."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await db.write(_once, key, perform, now)
        except IntegrityError:
            if attempt == ATTEMPTS:
                break
    raise Conflict("Another request changed this company's marketing at the same moment: send it again.")


async def cached(
    db: Database, key: Key | None, compute: Callable[[], Awaitable[Answer]], *, now: datetime
) -> Answer:
    """For a POST that writes nothing (a simulation): a repeat with the key gets the first answer."""
    if key is not None and (found := await db.read(_stored, key)) is not None:
        return found
    answer = await compute()
    if key is not None:
        # A racing retry may have stored its answer first: both computed the same replay.
        with contextlib.suppress(IntegrityError):
            await db.write(_remember, key, answer, now)
    return answer


def _once(
    conn: Connection, key: Key | None, perform: Callable[[Connection], Answer], now: datetime
) -> Answer:
    if key is not None and (found := _stored(conn, key)) is not None:
        return found
    answer = perform(conn)
    if key is not None:
        _remember(conn, key, answer, now)
    return answer


def _stored(conn: Connection, key: Key) -> Answer | None:
    row = conn.execute(
        select(_t.c.request_hash, _t.c.status, _t.c.headers, _t.c.body).where(
            _t.c.pos_system_id == key.pos_system_id,
            _t.c.company_id == key.company_id,
            _t.c.actor == key.actor,
            _t.c.key == key.key,
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != key.request_hash:
        raise IdempotencyKeyReused()
    return Answer(row.status, bytes(row.body), dict(row.headers), replayed=True)


def _remember(conn: Connection, key: Key, answer: Answer, now: datetime) -> None:
    kept = {"status": answer.status, "headers": answer.headers, "body": answer.body}
    conn.execute(insert(_t).values(**asdict(key), **kept, created_at=now))


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """Keys stored before ``before`` (for ``cmc prune``); a retry after that runs as a new request."""
    return [(_t.c.key, _t.c.created_at < before)]
