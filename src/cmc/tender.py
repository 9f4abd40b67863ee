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
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from cmc import interactions, profiles, rules, sale, sessions, transactions
from cmc.errors import DuplicateKey, Forbidden, TransactionConflict
from cmc.marketing import evaluate
from cmc.registry import Directory, PosSystem
from cmc.sale import Place, React, Reaction, Sale
from cmc.store import locks
from cmc.store.database import Database
from cmc.store.driver import Tx
from cmc.validation import encode, validate
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
    session_ttl: timedelta,
    dry_run: bool = False,
    check_session: bool = True,
) -> Answer:
    """Handle one SendTransaction body for ``pos`` (already authenticated).

    ``check_session=False`` is for the operator's ``cmc rules test`` only: a dry run through the API
    needs a session a real transaction could use, like the real one.
    """
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
    session = _Session(directory.session_keys, session_ttl) if check_session else None
    if dry_run:
        return Answer(await db.query(_preview, request, place, session, now=now), "dry-run")
    assert session is not None, "a transaction is stored only with its session checked"
    for attempt in range(1, RACE_ATTEMPTS + 1):
        try:
            return await db.transact(_record, request, place, session, now=now, react=react)
        except DuplicateKey:
            # Another process stored the same sale (or used the session) first; the next run sees it.
            if attempt == RACE_ATTEMPTS:
                raise
    raise AssertionError("the loop returns or raises")


@dataclass(frozen=True)
class _Session:
    """How a transaction's session is checked: the keys it may be signed with, its lifetime."""

    keys: tuple[bytes, ...]
    ttl: timedelta


async def _record(
    tx: Tx, request: wire.TransactionRequest, place: Place, session: _Session, *, now: datetime, react: React
) -> Answer:
    """Store ``request`` exactly once and answer it; a replay answers what the first time answered.

    Concurrent units for the same sale or the same customer take turns (named locks, PostgreSQL),
    so the second one finds what the first stored: the replay, the profile, the firings it counts.
    """
    claim = profiles.claim_of(request, region=place.location.country)
    scope = profiles.Scope(place.pos.id, place.company.id)
    await locks.take(tx, [_lock_name(scope, request), *profiles.lock_names(scope, claim)])
    stored_request, fingerprint = encode(request)
    session_id = sessions.canonical(request.sessionId)
    find = transactions.find(
        pos_system_id=scope.pos_system_id, company_id=scope.company_id,
        transaction_id=request.transactionId, session_id=session_id,
    )  # fmt: skip
    # The replay lookup and the customer's identifiers (locking their profiles): one round trip. A
    # replay locked the profiles for nothing; it holds the sale's lock anyway, and ends at once.
    known = profiles.known(claim, scope, tx.dialect)
    if known is None:
        stored, found = await tx.all(find.statement, find.params), None
    else:
        stored, rows = await tx.together(find, known)
        found = profiles.known_of(claim, rows)
    key = (*scope, request.transactionId)
    for row in stored:
        if (row.pos_system_id, row.company_id, row.pos_transaction_id) == key:
            if row.request_hash != fingerprint:
                raise TransactionConflict()
            return Answer(row.response, "replayed")
    # Any row left is the transaction this session id already carried (the session check says whose).
    _check_session(session, session_id, request, place, now=now, used=bool(stored))
    recorded = await _sale(tx, request, session_id, place, claim, now=now, write=True, found=found)
    reaction = await react(tx, recorded)
    body = _encode(response_of(recorded, reaction))
    await transactions.save(tx, recorded, request=stored_request, request_hash=fingerprint, response=body)
    return Answer(body, "created")


async def _preview(
    tx: Tx, request: wire.TransactionRequest, place: Place, session: _Session | None, *, now: datetime
) -> bytes:
    """The dry-run response: profile, effects, per-rule explanation and its text rendering."""
    claim = profiles.claim_of(request, region=place.location.country)
    if session is not None:
        session_id = sessions.canonical(request.sessionId)
        find = transactions.find(
            pos_system_id=place.pos.id, company_id=place.company.id,
            transaction_id=request.transactionId, session_id=session_id,
        )  # fmt: skip
        stored = await tx.all(find.statement, find.params)
        _check_session(
            session, session_id, request, place, now=now, used=any(r.id == session_id for r in stored)
        )
    previewed = await _sale(tx, request, "dry-run", place, claim, now=now, write=False)
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


def _check_session(
    session: _Session,
    session_id: str,
    request: wire.TransactionRequest,
    place: Place,
    *,
    now: datetime,
    used: bool,
) -> None:
    """Raise why the session cannot carry this transaction (``sessions.check`` says in which order)."""
    where = sessions.Where(place.pos.id, place.location.id, request.terminalId)
    sessions.check(session_id, session.keys, where, now=now, ttl=session.ttl, used=used)


def _lock_name(scope: profiles.Scope, request: wire.TransactionRequest) -> str:
    return f"transaction\0{scope.pos_system_id}\0{scope.company_id}\0{request.transactionId}"


async def _sale(
    tx: Tx,
    request: wire.TransactionRequest,
    sale_id: str,
    place: Place,
    claim: profiles.Claim,
    *,
    now: datetime,
    write: bool,
    found: profiles.Found | None = None,
) -> Sale:
    """The sale of ``request`` with its customer's profile as it is after this transaction.

    ``write`` records the transaction on the profile (creating it when new); without it the profile
    is only looked up, as it would be. ``found``: the customer's known identifiers, when looked up
    already (``profiles.known``).
    """
    reversal = sale.is_reversal(request)
    scope = profiles.Scope(place.pos.id, place.company.id)
    amount = request.transactionAmount
    if write:
        profile = await profiles.resolve(
            tx, claim, scope, transaction_id=sale_id, amount=amount, is_reversal=reversal, now=now,
            found=found,
        )  # fmt: skip
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
