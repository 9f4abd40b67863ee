"""Stored transactions: every statement on ``transactions`` and ``transaction_products``.

A transaction row keeps the decoded request (re-encoded as JSON), its fingerprint, and the exact
response bytes a replay answers with. ``cmc.tender`` decides what to store; this module stores it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import bindparam, insert, select

from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc_client import wire

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


@dataclass(frozen=True)
class Record:
    """One transaction as it is stored."""

    id: str
    pos_system_id: str
    company_id: str
    pos_transaction_id: str
    location_id: str
    terminal_id: str
    session_id: str
    transaction_type: str
    is_reversal: bool
    amount: Decimal | None
    occurred_at: datetime
    received_at: datetime
    profile_id: str | None
    loyalty_card: str | None
    request_hash: str
    request: bytes
    response: bytes


async def find(tx: Tx, *, pos_system_id: str, company_id: str, transaction_id: str) -> Stored | None:
    """The stored transaction with this POS transaction id, if any."""
    return await tx.first(_FIND, {"pos": pos_system_id, "company": company_id, "tx": transaction_id})


async def insert_record(tx: Tx, record: Record, products: list[wire.Product]) -> None:
    """Store a transaction and its basket lines."""
    await tx.execute(_INSERT, vars(record))
    if products:
        await tx.execute_many(
            _INSERT_PRODUCTS,
            [
                {
                    "transaction_id": record.id,
                    "line_no": index,
                    "product_id": p.productId,
                    "product_name": p.productName,
                    "manufacturer": p.manufacturer,
                    "product_category": p.productCategory,
                    "quantity": p.quantity,
                }
                for index, p in enumerate(products)
            ],
        )


async def stored_responses(
    tx: Tx, *, pos_system_id: str, company_ids: list[str], transaction_id: str
) -> dict[str, bytes]:
    """The stored SendTransaction answers of ``transaction_id``, by company, among ``company_ids``."""
    if not company_ids:
        return {}
    params = {f"c{n}": company for n, company in enumerate(company_ids)}
    params.update(pos=pos_system_id, tx=transaction_id)
    return dict(await tx.all(_responses(len(company_ids)), params))
