"""StartInteraction: a session binds one POS system, terminal and location to one coming transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update

from cmc.directory import Directory, Location, PosSystem
from cmc.errors import (
    LocationNotFound,
    SessionAlreadyUsed,
    SessionExpired,
    SessionMismatch,
    SessionNotFound,
    TerminalNotFound,
)
from cmc.store import tables
from cmc_client import wire


@dataclass(frozen=True)
class Session:
    """An open interaction, as the transaction needs it."""

    id: str
    location_id: str
    terminal_id: str
    expires_at: datetime
    transaction_id: str | None


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


def start(
    conn: Connection, pos: PosSystem, location: Location, terminal_id: str, *, now: datetime, ttl: timedelta
) -> str:
    """Open a session; returns its id (a GUID, as ClearLine's)."""
    session_id = str(uuid.uuid4())
    conn.execute(
        insert(tables.interaction_sessions).values(
            id=session_id,
            pos_system_id=pos.id,
            company_id=location.company_id,
            location_id=location.id,
            terminal_id=terminal_id,
            created_at=now,
            expires_at=now + ttl,
            transaction_id=None,
        )
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


def claim(conn: Connection, pos: PosSystem, tx: wire.TransactionRequest, *, now: datetime) -> Session:
    """The session ``tx`` names, checked for use by this transaction (not yet consumed)."""
    s = tables.interaction_sessions
    row = conn.execute(
        select(
            s.c.id, s.c.pos_system_id, s.c.location_id, s.c.terminal_id, s.c.expires_at, s.c.transaction_id
        ).where(s.c.id == tx.sessionId)
    ).first()
    if row is None or row.pos_system_id != pos.id:
        raise SessionNotFound(f"Unknown sessionId {tx.sessionId!r}: call startInteraction first.")
    if row.transaction_id is not None:
        raise SessionAlreadyUsed()
    if row.expires_at <= now:
        raise SessionExpired()
    mismatched = [
        name
        for name, sent, held in (
            ("terminalId", tx.terminalId, row.terminal_id),
            ("posLocationId", tx.posLocationId, row.location_id),
        )
        if sent != held
    ]
    if mismatched:
        raise SessionMismatch(
            errors={name: ["does not match the session's value"] for name in mismatched},
        )
    return Session(
        id=row.id,
        location_id=row.location_id,
        terminal_id=row.terminal_id,
        expires_at=row.expires_at,
        transaction_id=row.transaction_id,
    )


def consume(conn: Connection, session_id: str, transaction_id: str) -> None:
    """Mark the session used by ``transaction_id``; a concurrent consumer loses with 409."""
    s = tables.interaction_sessions
    done = conn.execute(
        update(s)
        .where(s.c.id == session_id, s.c.transaction_id.is_(None))
        .values(transaction_id=transaction_id)
    )
    if done.rowcount != 1:
        raise SessionAlreadyUsed()
