"""Stored transactions: every statement on ``transactions`` and ``transaction_products``.

A transaction row keeps the decoded request (re-encoded as JSON), its fingerprint, and the exact
response bytes a replay answers with. ``cmc.tender`` decides what to store; this module stores it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, NamedTuple

import msgspec
from sqlalchemy import bindparam, insert, select

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
