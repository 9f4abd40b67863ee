"""``cmc rules test TX.json``: what the POS Rules would do with a transaction in a file, and why.

The file is a SendTransaction body (``sessionId`` may be left out); the POS system is named or found
from the location. The answer comes from the tender use case itself (``dry_run=True``), the same
code ``?dryRun=true`` runs; nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from cmc import holdout, tender
from cmc.errors import ApiError, CmcError, ValidationFailed
from cmc.registry import Directory, PosSystem, snapshot
from cmc.sale import no_reaction
from cmc.store.database import Database
from cmc_client import wire

_decode = msgspec.json.Decoder(wire.TransactionRequest)


@dataclass(frozen=True)
class Explained:
    """``cmc rules test`` output: the text explanation and the full dry-run JSON."""

    text: str
    json: str


async def explain_file(
    db: Database, raw: bytes, *, pos_system_id: str | None, source: str, now: datetime
) -> Explained:
    """Dry-run a transaction read from a file."""
    try:
        body = msgspec.json.decode(raw)
        if isinstance(body, dict):
            body.setdefault("sessionId", "dry-run")
        request = _decode.decode(msgspec.json.encode(body))
    except msgspec.ValidationError as exc:
        raise CmcError(f"{source}: {_fields(ValidationFailed.from_msgspec(exc))}") from None
    except msgspec.DecodeError as exc:
        raise CmcError(f"{source}: not valid JSON: {exc}") from None
    await holdout.ensure_secret(db)  # what the holdout assignment it explains is keyed with
    directory = await db.read(snapshot.load)
    pos = _pos_system(directory, request.posLocationId, pos_system_id)
    try:
        answer = await tender.send_transaction(
            db,
            directory,
            pos,
            request,
            now=now,
            react=no_reaction,
            session_ttl=timedelta(0),
            dry_run=True,
            check_session=False,
        )
    except ApiError as exc:
        raise CmcError(f"{source}: {_fields(exc)}") from None
    text = msgspec.json.decode(answer.body)["data"].get("text", f"posStatus {pos.status}: nothing evaluated")
    return Explained(text=text, json=answer.body.decode())


def _pos_system(directory: Directory, location_id: str, wanted: str | None) -> PosSystem:
    if wanted is not None:
        pos = directory.pos_systems.get(wanted)
        if pos is None:
            raise CmcError(f"POS system {wanted!r} is not registered")
        return pos
    owners = sorted({pos for pos, loc in directory.locations if loc == location_id})
    if len(owners) != 1:
        found = "no POS system" if not owners else f"several POS systems ({', '.join(owners)})"
        raise CmcError(f"location {location_id!r} belongs to {found}; name one with --pos-system")
    return directory.pos_systems[owners[0]]


def _fields(error: ApiError) -> str:
    if not error.errors:
        return error.detail
    return "; ".join(f"{name}: {', '.join(problems)}" for name, problems in error.errors.items())
