"""StartInteraction: a session binds one POS system, terminal and location to one coming transaction."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Column, ColumnElement, bindparam, insert, select, update

from cmc.errors import (
    LocationNotFound,
    SessionAlreadyUsed,
    SessionExpired,
    SessionMismatch,
    SessionNotFound,
    TerminalNotFound,
)
from cmc.ids import new_id
from cmc.registry import Directory, Location, PosSystem
from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc.store.types import UtcDateTime
from cmc_client import wire

# Statements are built once: building and cache-keying a Core statement costs more than running it.
_s = tables.interaction_sessions


class _Session(NamedTuple):
    pos_system_id: str
    location_id: str
    terminal_id: str
    expires_at: datetime
    transaction_id: str | None


_INSERT = Statement(insert(_s), name="sessions.insert", keys=[c.name for c in _s.columns])
_SELECT = Statement(
    select(
        _s.c.pos_system_id, _s.c.location_id, _s.c.terminal_id, _s.c.expires_at, _s.c.transaction_id
    ).where(_s.c.id == bindparam("id")),
    name="sessions.get",
    into=_Session,
)
_CONSUME = Statement(
    update(_s)
    .where(
        _s.c.id == bindparam("sid"),
        _s.c.transaction_id.is_(None),
        _s.c.pos_system_id == bindparam("pos"),
        _s.c.terminal_id == bindparam("terminal"),
        _s.c.location_id == bindparam("location"),
        _s.c.expires_at > bindparam("now", type_=UtcDateTime),
    )
    .values(transaction_id=bindparam("tid")),
    name="sessions.consume",
)


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """What ``cmc prune`` deletes here: sessions that expired before ``before``."""
    return [(_s.c.id, _s.c.expires_at < before)]


def resolve_terminal(
    directory: Directory, pos: PosSystem, *, location_id: str, terminal_id: str, company_id: str | None
) -> Location:
    """The registered location of ``terminal_id``, or 404."""
    location = directory.locations.get((pos.id, location_id))
    if location is None or (company_id is not None and location.company_id != company_id):
        raise LocationNotFound(f"Location {location_id!r} is not registered for POS system {pos.id!r}.")
    if terminal_id not in location.terminals:
        raise TerminalNotFound(
            f"Terminal Not Found: {terminal_id!r} is not registered at location {location_id!r}."
        )
    return location


async def start(
    tx: Tx, pos: PosSystem, location: Location, terminal_id: str, *, now: datetime, ttl: timedelta
) -> str:
    """Open a session; its id is a GUID like ClearLine's, time-ordered (74 random bits) for locality."""
    session_id = new_id()
    await tx.execute(
        _INSERT,
        {
            "id": session_id,
            "pos_system_id": pos.id,
            "company_id": location.company_id,
            "location_id": location.id,
            "terminal_id": terminal_id,
            "created_at": now,
            "expires_at": now + ttl,
            "transaction_id": None,
        },
    )
    return session_id


def response(
    request: wire.StartInteractionRequest, pos: PosSystem, session_id: str | None
) -> wire.StartInteractionResponse:
    """The seed's StartInteraction answer."""
    return wire.StartInteractionResponse(
        data=wire.StartInteractionData(
            terminalId=request.terminalId,
            posLocationId=request.posLocationId,
            sessionId=session_id,
            posStatus=pos.status,  # type: ignore[arg-type]
        )
    )


async def consume(
    tx: Tx, pos: PosSystem, request: wire.TransactionRequest, transaction_id: str, *, now: datetime
) -> None:
    """Bind the session ``tx`` names to ``transaction_id``, or raise why it cannot carry it.

    One conditional UPDATE on the happy path; only a refused session costs a second query to say
    why (unknown 404, used 409, expired 410, other terminal or location 400). Concurrent consumers
    of one session cannot both win: the loser sees it used.
    """
    done = await tx.execute(
        _CONSUME,
        {
            "sid": request.sessionId,
            "tid": transaction_id,
            "pos": pos.id,
            "terminal": request.terminalId,
            "location": request.posLocationId,
            "now": now,
        },
    )
    if done == 1:
        return
    row = await tx.first(_SELECT, {"id": request.sessionId})
    if row is None or row.pos_system_id != pos.id:
        raise SessionNotFound(f"Unknown sessionId {request.sessionId!r}: call startInteraction first.")
    if row.transaction_id is not None:
        raise SessionAlreadyUsed()
    if row.expires_at <= now:
        raise SessionExpired()
    mismatched = [
        name
        for name, sent, held in (
            ("terminalId", request.terminalId, row.terminal_id),
            ("posLocationId", request.posLocationId, row.location_id),
        )
        if sent != held
    ]
    raise SessionMismatch(errors={name: ["does not match the session's value"] for name in mismatched})
