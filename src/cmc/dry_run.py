"""Dry runs: what the POS Rules would do with a transaction, and why, without writing anything.

Served as ``POST /pos/{posSystemId}/transaction?dryRun=true`` and ``cmc rules test TX.json``. The
session and the idempotency key are not checked: a dry run answers about the rules alone, for the
customer profile as it would be after this transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import Connection

from cmc import directory, interactions, profiles, rules, transactions
from cmc.directory import Company, Location, PosSystem
from cmc.errors import ApiError, CmcError, ValidationFailed
from cmc.marketing import Marketing
from cmc.transactions import Sale, sales_person_name
from cmc_client import wire

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(wire.TransactionRequest)


def preview(
    conn: Connection,
    tx: wire.TransactionRequest,
    *,
    pos: PosSystem,
    company: Company,
    location: Location,
    now: datetime,
) -> bytes:
    """The dry-run response: profile, effects, per-rule explanation and its text rendering."""
    is_reversal = transactions.is_reversal_of(tx)
    claim = profiles.claim_of(tx, region=location.country)
    peeked = profiles.peek(
        conn,
        claim,
        pos_system_id=pos.id,
        company_id=company.id,
        amount=tx.transactionAmount,
        is_reversal=is_reversal,
    )
    sale = Sale(
        id="dry-run",
        request=tx,
        pos=pos,
        company=company,
        location=location,
        claim=claim,
        profile=peeked[0] if peeked else None,
        is_reversal=is_reversal,
        occurred_at=transactions.occurred_at_of(tx, location, now=now),
        now=now,
    )
    evaluation = Marketing(base_url="").evaluate(conn, sale, explain=True)
    data = {
        "dryRun": True,
        "posStatus": pos.status,
        "profile": profiles.to_wire(sale.profile, sales_person=sales_person_name(tx.salesPerson)),
        "effects": evaluation.effects,
        "explanation": evaluation.explanation or [],
        "text": rules.format_explanation(evaluation),
    }
    return _encode({"data": data})


@dataclass(frozen=True)
class Explained:
    """``cmc rules test`` output: the text explanation and the full dry-run JSON."""

    text: str
    json: str


def explain_file(
    conn: Connection, raw: bytes, *, pos_system_id: str | None, source: str, now: datetime
) -> Explained:
    """Dry-run a transaction read from a file (``sessionId`` may be left out)."""
    try:
        body = msgspec.json.decode(raw)
        if isinstance(body, dict):
            body.setdefault("sessionId", "dry-run")
        tx = _decode.decode(msgspec.json.encode(body))
        transactions.validate(tx)
    except msgspec.ValidationError as exc:
        raise CmcError(f"{source}: {_fields(ValidationFailed.from_msgspec(exc))}") from None
    except msgspec.DecodeError as exc:
        raise CmcError(f"{source}: not valid JSON: {exc}") from None
    except ApiError as exc:
        raise CmcError(f"{source}: {_fields(exc)}") from None
    snapshot = directory.load(conn)
    pos = _pos_system(snapshot, tx.posLocationId, pos_system_id)
    try:
        location = interactions.resolve_terminal(
            snapshot, pos, location_id=tx.posLocationId, terminal_id=tx.terminalId, company_id=tx.posCompanyId
        )
    except ApiError as exc:
        raise CmcError(exc.detail) from None
    company = snapshot.companies[(pos.id, location.company_id)]
    answer = preview(conn, tx, pos=pos, company=company, location=location, now=now)
    text = msgspec.json.decode(answer)["data"]["text"]
    return Explained(text=text, json=answer.decode())


def _pos_system(snapshot: directory.Directory, location_id: str, wanted: str | None) -> PosSystem:
    if wanted is not None:
        pos = snapshot.pos_systems.get(wanted)
        if pos is None:
            raise CmcError(f"POS system {wanted!r} is not registered")
        return pos
    owners = sorted({pos for pos, loc in snapshot.locations if loc == location_id})
    if len(owners) != 1:
        found = "no POS system" if not owners else f"several POS systems ({', '.join(owners)})"
        raise CmcError(f"location {location_id!r} belongs to {found}; name one with --pos-system")
    return snapshot.pos_systems[owners[0]]


def _fields(error: ApiError) -> str:
    if not error.errors:
        return error.detail
    return "; ".join(f"{name}: {', '.join(problems)}" for name, problems in error.errors.items())
