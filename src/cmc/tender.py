"""SendTransaction, the tender use case: decide, dedupe, store, resolve the profile, react, answer.

``send_transaction`` is what the route, ``?dryRun=true`` and ``cmc rules test`` all call. In order:

1. the body's own checks (``validation``);
2. a POS system that is not Accepted gets its status back and nothing is stored; one whose
   transactions are disabled is refused (403);
3. the terminal must be registered at the location (404);
4. a dry run explains what the POS Rules would do, writing nothing;
5. otherwise the sale is recorded in one database transaction: everything it writes (its row and
   products, the profile change, the session consumption, whatever marketing queues) commits
   together, or none of it does.

Idempotency: a transaction is identified by (posSystemId, company, transactionId). Sending it again
with the same body (the sessionId aside: a client may have had to open a new session) returns the
stored response byte for byte and writes nothing; the same id with a different body is a 409. Two
processes storing the same transaction at once collide on its unique key; the loser runs again and
answers as a replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

from cmc import interactions, profiles, rules, sale, transactions
from cmc.errors import DuplicateKey, Forbidden, TransactionConflict
from cmc.ids import new_id
from cmc.marketing import evaluate
from cmc.registry import Directory, PosSystem
from cmc.sale import Place, React, Reaction, Sale
from cmc.store.database import Database
from cmc.store.driver import Tx
from cmc.validation import request_hash, validate
from cmc_client import wire

_encode = msgspec.json.Encoder().encode
RACE_ATTEMPTS = 3
"""A unique-key race is settled on the next run (it finds the winner's row); more would be a bug."""

Kind = Literal["created", "replayed", "not-accepted", "dry-run"]


@dataclass(frozen=True)
class Answer:
    """The response body, and what happened (for metrics)."""

    body: bytes
    kind: Kind


async def send_transaction(
    db: Database,
    directory: Directory,
    pos: PosSystem,
    request: wire.TransactionRequest,
    *,
    now: datetime,
    react: React,
    dry_run: bool = False,
) -> Answer:
    """Handle one SendTransaction body for ``pos`` (already authenticated)."""
    validate(request)
    if not pos.accepted:
        return Answer(_encode(_not_accepted(pos)), "not-accepted")
    if not pos.settings.get("isTransactionsEnabled", True):
        raise Forbidden("Transactions are disabled for this POS system (isTransactionsEnabled is false).")
    location = interactions.resolve_terminal(
        directory,
        pos,
        location_id=request.posLocationId,
        terminal_id=request.terminalId,
        company_id=request.posCompanyId,
    )
    place = Place(pos, directory.companies[(pos.id, location.company_id)], location)
    if dry_run:
        return Answer(await db.query(_preview, request, place, now=now), "dry-run")
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            return await db.transact(_record, request, place, now=now, react=react)
        except DuplicateKey:
            # Another process stored the same transaction (or session use) first; the next run sees it.
            if attempt == RACE_ATTEMPTS:
                raise
    raise AssertionError("the loop returns or raises")


async def _record(
    tx: Tx, request: wire.TransactionRequest, place: Place, *, now: datetime, react: React
) -> Answer:
    """Store ``request`` exactly once and answer it; a replay answers what the first time answered."""
    fingerprint = request_hash(request)
    existing = await transactions.find(
        tx, pos_system_id=place.pos.id, company_id=place.company.id, transaction_id=request.transactionId
    )
    if existing is not None:
        if existing.request_hash != fingerprint:
            raise TransactionConflict()
        return Answer(existing.response, "replayed")
    sale_id = new_id()
    await interactions.consume(tx, place.pos, request, sale_id, now=now)
    recorded = await _sale(tx, request, sale_id, place, now=now, write=True)
    reaction = await react(tx, recorded)
    body = _encode(response_of(recorded, reaction))
    await transactions.save(tx, recorded, request_hash=fingerprint, response=body)
    return Answer(body, "created")


async def _preview(tx: Tx, request: wire.TransactionRequest, place: Place, *, now: datetime) -> bytes:
    """The dry-run response: profile, effects, per-rule explanation and its text rendering."""
    previewed = await _sale(tx, request, "dry-run", place, now=now, write=False)
    evaluation = await evaluate(tx, previewed, explain=True)
    data = {
        "dryRun": True,
        "posStatus": place.pos.status,
        "profile": profiles.to_wire(
            previewed.profile, sales_person=sale.sales_person_name(request.salesPerson)
        ),
        "effects": evaluation.effects,
        "explanation": evaluation.explanation or [],
        "text": rules.format_explanation(evaluation),
    }
    return _encode({"data": data})


async def _sale(
    tx: Tx, request: wire.TransactionRequest, sale_id: str, place: Place, *, now: datetime, write: bool
) -> Sale:
    """The sale of ``request`` with its customer's profile as it is after this transaction.

    ``write`` records the transaction on the profile (creating it when new); without it the profile
    is only looked up, as it would be.
    """
    reversal = sale.is_reversal(request)
    claim = profiles.claim_of(request, region=place.location.country)
    scope = profiles.Scope(place.pos.id, place.company.id)
    amount = request.transactionAmount
    if write:
        profile = await profiles.resolve(
            tx, claim, scope, transaction_id=sale_id, amount=amount, is_reversal=reversal, now=now
        )
    else:
        peeked = await profiles.peek(tx, claim, scope, amount=amount, is_reversal=reversal)
        profile = peeked[0] if peeked else None
    when = sale.occurred_at(request, place.location, now=now)
    return Sale(sale_id, request, place, claim, profile, reversal, when, now)


def response_of(recorded: Sale, reaction: Reaction) -> wire.TransactionResponse:
    """The seed's SendTransaction answer."""
    request = recorded.request
    return wire.TransactionResponse(
        data=wire.TransactionData(
            id=recorded.id,
            qrCodeWidget=reaction.qr_widget,
            cfsTemplate=reaction.cfs_template,
            posStatus=recorded.pos.status,  # type: ignore[arg-type]
            profile=profiles.to_wire(
                recorded.profile, sales_person=sale.sales_person_name(request.salesPerson)
            ),
            sessionId=request.sessionId,
            notificationMessageId=reaction.notification_message_id,
            effects=reaction.effects,
        )
    )


def _not_accepted(pos: PosSystem) -> wire.TransactionResponse:
    """A POS that is not Accepted gets its status back and nothing is stored."""
    return wire.TransactionResponse(
        data=wire.TransactionData(id=None, qrCodeWidget=None, cfsTemplate=None, posStatus=pos.status)  # type: ignore[arg-type]
    )
