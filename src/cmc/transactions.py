"""Stored transactions: every statement on ``transactions`` and ``transaction_products``.

A transaction row keeps the decoded request (re-encoded as JSON), its fingerprint, and the exact
response bytes a replay answers with. ``cmc.tender`` decides what to store; this module stores it.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

import msgspec
from sqlalchemy import Connection, bindparam, insert, select

from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement

if TYPE_CHECKING:
    from cmc.sale import Sale
    from cmc_client import wire

_encode = msgspec.json.Encoder().encode

_t = tables.transactions
_p = tables.transaction_products


class Stored(NamedTuple):
    """What a replay needs of a stored transaction."""

    request_hash: str
    response: bytes


_FIND = Statement(
    select(_t.c.request_hash, _t.c.response).where(
        _t.c.pos_system_id == bindparam("pos"),
        _t.c.company_id == bindparam("company"),
        _t.c.pos_transaction_id == bindparam("tx"),
    ),
    name="transactions.find",
    into=lambda request_hash, response: Stored(request_hash, bytes(response)),
)
_INSERT = Statement(insert(_t), name="transactions.insert", keys=[c.name for c in _t.columns])
_INSERT_PRODUCTS = Statement(
    insert(_p), name="transactions.insert_products", keys=[c.name for c in _p.columns]
)


@functools.cache
def _responses(companies: int) -> Statement[tuple[str, bytes]]:
    return Statement(
        select(_t.c.company_id, _t.c.response).where(
            _t.c.pos_system_id == bindparam("pos"),
            _t.c.company_id.in_([bindparam(f"c{n}") for n in range(companies)]),
            _t.c.pos_transaction_id == bindparam("tx"),
        ),
        name=f"transactions.responses[{companies}]",
        into=lambda company, response: (company, bytes(response)),
    )


async def find(tx: Tx, *, pos_system_id: str, company_id: str, transaction_id: str) -> Stored | None:
    """The stored transaction with this POS transaction id, if any."""
    return await tx.first(_FIND, {"pos": pos_system_id, "company": company_id, "tx": transaction_id})


async def save(tx: Tx, sale: Sale, *, request_hash: str, response: bytes) -> None:
    """Store the sale's transaction, its basket lines, its fingerprint and the answer replays get."""
    request = sale.request
    card = next((i.value for i in sale.claim.identifiers if i.kind == "card"), None)
    row = {
        "id": sale.id,
        "pos_system_id": sale.pos.id,
        "company_id": sale.company.id,
        "pos_transaction_id": request.transactionId,
        "location_id": sale.location.id,
        "terminal_id": request.terminalId,
        "session_id": request.sessionId,
        "transaction_type": request.transactionType or "Undefined",
        "is_reversal": sale.is_reversal,
        "amount": request.transactionAmount,
        "occurred_at": sale.occurred_at,
        "received_at": sale.now,
        "profile_id": sale.profile.id if sale.profile else None,
        "loyalty_card": card,
        "request_hash": request_hash,
        "request": _encode(request),
        "response": response,
    }
    await tx.execute(_INSERT, row)
    if request.products:
        await tx.execute_many(
            _INSERT_PRODUCTS,
            [_line(sale.id, index, product) for index, product in enumerate(request.products)],
        )


def _line(transaction_id: str, index: int, product: wire.Product) -> dict[str, object]:
    return {
        "transaction_id": transaction_id,
        "line_no": index,
        "product_id": product.productId,
        "product_name": product.productName,
        "manufacturer": product.manufacturer,
        "product_category": product.productCategory,
        "quantity": product.quantity,
    }


async def stored_responses(
    tx: Tx, *, pos_system_id: str, company_ids: list[str], transaction_id: str
) -> dict[str, bytes]:
    """The stored SendTransaction answers of ``transaction_id``, by company, among ``company_ids``."""
    if not company_ids:
        return {}
    params = {f"c{n}": company for n, company in enumerate(company_ids)}
    params.update(pos=pos_system_id, tx=transaction_id)
    return dict(await tx.all(_responses(len(company_ids)), params))


class History(NamedTuple):
    """A stored transaction as a replay needs it (``cmc.merchant.simulation``)."""

    id: str
    pos_transaction_id: str
    location_id: str
    occurred_at: datetime
    profile_id: str | None
    is_reversal: bool
    request: bytes


def between(
    conn: Connection, *, pos_system_id: str, company_id: str, start: datetime, end: datetime, limit: int
) -> list[History]:
    """The company's transactions with ``start <= occurred_at < end``: the latest ``limit``, oldest first."""
    rows = conn.execute(
        select(*(_t.c[name] for name in History._fields))
        .where(
            _t.c.pos_system_id == pos_system_id,
            _t.c.company_id == company_id,
            _t.c.occurred_at >= start,
            _t.c.occurred_at < end,
        )
        .order_by(_t.c.occurred_at.desc(), _t.c.id.desc())
        .limit(limit)
    )
    return [History(*row) for row in reversed(rows.all())]


def earlier(
    conn: Connection, *, pos_system_id: str, company_id: str, start: datetime, end: datetime
) -> list[tuple[str, bool, Decimal | None]]:
    """(profile, is_reversal, amount) of every transaction before ``start`` of the customers who have
    one in ``[start, end)``: what their profiles held when the window began."""
    company = (_t.c.pos_system_id == pos_system_id, _t.c.company_id == company_id)
    customers = select(_t.c.profile_id).where(
        *company, _t.c.occurred_at >= start, _t.c.occurred_at < end, _t.c.profile_id.is_not(None)
    )
    rows = conn.execute(
        select(_t.c.profile_id, _t.c.is_reversal, _t.c.amount).where(
            *company, _t.c.occurred_at < start, _t.c.profile_id.in_(customers)
        )
    )
    return [(profile, bool(reversal), amount) for profile, reversal, amount in rows]
