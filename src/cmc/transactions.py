"""SendTransaction, the tender use case: validate, dedupe, store, resolve the profile, react, answer.

Everything a transaction writes (its row and products, the profile change, the session consumption,
and whatever marketing queues) commits in one database transaction, or none of it does.

Idempotency: a transaction is identified by (posSystemId, company, transactionId). Sending it again
with the same body (the sessionId aside: a client may have had to open a new session) returns the
stored response byte for byte and writes nothing; the same id with a different body is a 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import msgspec
from sqlalchemy import Connection, bindparam, insert, select

from cmc import interactions, profiles
from cmc.directory import Company, Location, PosSystem
from cmc.errors import TransactionConflict, ValidationFailed
from cmc.ids import new_id
from cmc.store import tables
from cmc.store.prepared import Prepared
from cmc_client import wire

REVERSAL_TYPES = frozenset({"refund", "return", "void"})
MAX_AMOUNT = Decimal("1e12")
MAX_DECIMALS = 6
_SMALLEST = Decimal(1).scaleb(-MAX_DECIMALS)
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(2200, 1, 1)
"""Sales happen in this range; outside it a date is a POS bug (and would overflow time zone maths)."""

_encode = msgspec.json.Encoder().encode

# Built once: constructing a Core statement per call costs more than executing it.
_t = tables.transactions
_FIND = Prepared(
    select(_t.c.request_hash, _t.c.response).where(
        _t.c.pos_system_id == bindparam("pos"),
        _t.c.company_id == bindparam("company"),
        _t.c.pos_transaction_id == bindparam("tx"),
    )
)
_INSERT = Prepared(insert(_t), keys=[c.name for c in _t.columns])
_STORED = select(_t.c.company_id, _t.c.response).where(
    _t.c.pos_system_id == bindparam("pos"),
    _t.c.company_id.in_(bindparam("companies", expanding=True)),
    _t.c.pos_transaction_id == bindparam("tx"),
)
_INSERT_PRODUCTS = Prepared(
    insert(tables.transaction_products), keys=[c.name for c in tables.transaction_products.columns]
)
_hash_encode = msgspec.json.Encoder().encode  # Structs encode in field order: the same body, the same bytes


@dataclass(frozen=True)
class Sale:
    """A transaction being recorded, as marketing sees it."""

    id: str
    request: wire.TransactionRequest
    pos: PosSystem
    company: Company
    location: Location
    claim: profiles.Claim
    profile: profiles.ProfileState | None
    is_reversal: bool
    occurred_at: datetime
    now: datetime


@dataclass(frozen=True)
class Reaction:
    """What marketing did with a sale: the response's widget, template and message id."""

    qr_widget: wire.QrCodeWidget | None = None
    cfs_template: wire.CfsTemplate | None = None
    notification_message_id: str | None = None
    effects: list[wire.Effect] = field(default_factory=list)


Marketing = Callable[[Connection, Sale], Reaction]
"""Reacts to a sale inside its database transaction (the POS Rules engine plugs in here)."""


def no_marketing(conn: Connection, sale: Sale) -> Reaction:
    """No rules: every transaction gets empty marketing fields."""
    return Reaction()


@dataclass(frozen=True)
class Outcome:
    """The response body and whether it was created now or replayed."""

    body: bytes
    replayed: bool


def validate(tx: wire.TransactionRequest) -> None:
    """What the wire types cannot say: finite bounded amounts, real dates."""
    errors: dict[str, list[str]] = {}
    if tx.transactionAmount is not None and (problem := _amount_problem(tx.transactionAmount)):
        errors["transactionAmount"] = [problem]
    for index, product in enumerate(tx.products or ()):
        if product.quantity is not None and (problem := _amount_problem(product.quantity)):
            errors[f"products[{index}].quantity"] = [problem]
    if tx.transactionDate is not None and not EARLIEST <= tx.transactionDate.replace(tzinfo=None) <= LATEST:
        errors["transactionDate"] = [f"must be between {EARLIEST.year} and {LATEST.year}"]
    if tx.customer and tx.customer.birthDate and not _is_date(tx.customer.birthDate):
        errors["customer.birthDate"] = ["must be an ISO 8601 date (YYYY-MM-DD) or date-time"]
    if tx.purchaseQuantity is not None and (problem := _amount_problem(tx.purchaseQuantity)):
        errors["purchaseQuantity"] = [problem]
    if errors:
        raise ValidationFailed(errors=errors)


def request_hash(tx: wire.TransactionRequest) -> str:
    """Fingerprint of the body, sessionId excluded, for telling a replay from a conflicting reuse.

    The hashed bytes are the body with an empty ``sessionId`` in front, as every stored fingerprint
    was computed when ``sessionId`` was the request's first field (a test pins the vectors).
    """
    fields = msgspec.to_builtins(tx)
    del fields["sessionId"]
    return hashlib.sha256(_hash_encode({"sessionId": "", **fields})).hexdigest()


def record(
    conn: Connection,
    tx: wire.TransactionRequest,
    *,
    pos: PosSystem,
    company: Company,
    location: Location,
    now: datetime,
    marketing: Marketing = no_marketing,
) -> Outcome:
    """Store ``tx`` exactly once and answer it; a replay answers what the first time answered."""
    fingerprint = request_hash(tx)
    existing = _FIND.first(conn, {"pos": pos.id, "company": location.company_id, "tx": tx.transactionId})
    if existing is not None:
        stored_hash, stored_response = existing
        if stored_hash != fingerprint:
            raise TransactionConflict()
        return Outcome(body=bytes(stored_response), replayed=True)

    transaction_id = new_id()
    interactions.consume(conn, pos, tx, transaction_id, now=now)
    is_reversal = is_reversal_of(tx)
    claim = profiles.claim_of(tx, region=location.country)
    profile = profiles.resolve(
        conn,
        claim,
        pos_system_id=pos.id,
        company_id=location.company_id,
        transaction_id=transaction_id,
        amount=tx.transactionAmount,
        is_reversal=is_reversal,
        now=now,
    )
    occurred_at = occurred_at_of(tx, location, now=now)
    sale = Sale(
        id=transaction_id,
        request=tx,
        pos=pos,
        company=company,
        location=location,
        claim=claim,
        profile=profile,
        is_reversal=is_reversal,
        occurred_at=occurred_at,
        now=now,
    )
    reaction = marketing(conn, sale)
    body = _encode(response_of(sale, reaction))
    _INSERT.execute(
        conn,
        {
            "id": transaction_id,
            "pos_system_id": pos.id,
            "company_id": location.company_id,
            "pos_transaction_id": tx.transactionId,
            "location_id": location.id,
            "terminal_id": tx.terminalId,
            "session_id": tx.sessionId,
            "transaction_type": tx.transactionType or "Undefined",
            "is_reversal": is_reversal,
            "amount": tx.transactionAmount,
            "occurred_at": occurred_at,
            "received_at": now,
            "profile_id": profile.id if profile else None,
            "loyalty_card": next((i.value for i in claim.identifiers if i.kind == "card"), None),
            "request_hash": fingerprint,
            "request": _encode(tx),
            "response": body,
        },
    )
    if tx.products:
        _INSERT_PRODUCTS.execute_many(
            conn,
            [
                {
                    "transaction_id": transaction_id,
                    "line_no": index,
                    "product_id": p.productId,
                    "product_name": p.productName,
                    "manufacturer": p.manufacturer,
                    "product_category": p.productCategory,
                    "quantity": p.quantity,
                }
                for index, p in enumerate(tx.products)  # non-empty: checked above
            ],
        )
    return Outcome(body=body, replayed=False)


def stored_responses(
    conn: Connection, *, pos_system_id: str, company_ids: list[str], transaction_id: str
) -> dict[str, bytes]:
    """The stored SendTransaction answers of ``transaction_id``, by company, among ``company_ids``."""
    rows = conn.execute(_STORED, {"pos": pos_system_id, "companies": company_ids, "tx": transaction_id})
    return {row.company_id: bytes(row.response) for row in rows}


def response_of(sale: Sale, reaction: Reaction) -> wire.TransactionResponse:
    """The seed's SendTransaction answer."""
    sales_person = sales_person_name(sale.request.salesPerson)
    return wire.TransactionResponse(
        data=wire.TransactionData(
            id=sale.id,
            qrCodeWidget=reaction.qr_widget,
            cfsTemplate=reaction.cfs_template,
            posStatus=sale.pos.status,  # type: ignore[arg-type]
            profile=profiles.to_wire(sale.profile, sales_person=sales_person),
            sessionId=sale.request.sessionId,
            notificationMessageId=reaction.notification_message_id,
            effects=reaction.effects,
        )
    )


def is_reversal_of(tx: wire.TransactionRequest) -> bool:
    """Refunds, returns, voids and negative amounts reverse a sale; they never trigger marketing."""
    kind = (tx.transactionType or "").strip().lower()
    return kind in REVERSAL_TYPES or (tx.transactionAmount is not None and tx.transactionAmount < 0)


def occurred_at_of(tx: wire.TransactionRequest, location: Location, *, now: datetime) -> datetime:
    """The sale's instant: a date-time without offset is wall-clock time at the location."""
    if tx.transactionDate is None:
        return now
    if tx.transactionDate.tzinfo is None:
        return tx.transactionDate.replace(tzinfo=location.timezone)
    return tx.transactionDate


def sales_person_name(person: wire.SalesPerson | None) -> str | None:
    if person is None:
        return None
    name = " ".join(part.strip() for part in (person.firstName, person.lastName) if part and part.strip())
    return name or person.id


def _amount_problem(value: Decimal) -> str | None:
    if not value.is_finite():
        return "must be a finite number"
    if abs(value) >= MAX_AMOUNT:
        return "is too large"
    if value != value.quantize(_SMALLEST):
        return f"has more than {MAX_DECIMALS} decimal places"
    return None


def _is_date(value: str) -> bool:
    """An ISO 8601 date (``1990-04-11``) or date-time (``1990-04-11T00:00:00Z``)."""
    text = value.strip()
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
