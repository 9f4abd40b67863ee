"""StartInteraction: a session binds one POS system, terminal and location to one coming transaction.

Opening a session writes nothing: the id is signed (``cmc.sessions``) and checked when the
transaction arrives.
"""

from __future__ import annotations

from datetime import datetime

from cmc import sessions
from cmc.errors import LocationNotFound, TerminalNotFound
from cmc.registry import Directory, Location, PosSystem
from cmc_client import wire


def resolve_terminal(
    directory: Directory, pos: PosSystem, *, location_id: str, terminal_id: str, company_id: str | None
) -> Location:
    """The registered location of ``terminal_id``, or 404."""
    location = directory.locations.get((pos.id, location_id))
    if location is None:
        raise LocationNotFound(f"Location {location_id!r} is not registered for POS system {pos.id!r}.")
    if company_id is not None and location.company_id != company_id:
        # Both companies are this POS system's own: naming the mismatch tells it nothing new.
        raise LocationNotFound(
            f"Location {location_id!r} is not a location of company {company_id!r} of POS system {pos.id!r}."
        )
    if terminal_id not in location.terminals:
        raise TerminalNotFound(
            f"Terminal Not Found: {terminal_id!r} is not registered at location {location_id!r}."
        )
    return location


def start(
    directory: Directory, pos: PosSystem, request: wire.StartInteractionRequest, *, now: datetime
) -> wire.StartInteractionResponse:
    """The StartInteraction answer: a new session for an Accepted POS system, its status otherwise."""
    location = resolve_terminal(
        directory,
        pos,
        location_id=request.posLocationId,
        terminal_id=request.terminalId,
        company_id=request.posCompanyId,
    )
    session_id = None
    if pos.accepted:
        where = sessions.Where(pos.id, location.id, request.terminalId)
        session_id = sessions.issue(directory.session_keys[0], where, now=now)
    return wire.StartInteractionResponse(
        data=wire.StartInteractionData(
            terminalId=request.terminalId,
            posLocationId=request.posLocationId,
            sessionId=session_id,
            posStatus=pos.status,  # type: ignore[arg-type]
        )
    )
