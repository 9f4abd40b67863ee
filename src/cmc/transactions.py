"""Stored transactions: every statement on ``transactions``.

A transaction row keeps the decoded request (re-encoded as JSON, its basket included), its
fingerprint, and the exact response bytes a replay answers with. Its id is the session id that
carried it. ``cmc.tender`` decides what to store; this module stores it.
"""

from __future__ import annotations

import functools
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Subquery,
    and_,
    bindparam,
    func,
    insert,
    select,
    union_all,
)

from cmc.lift import FollowUp
from cmc.store import buckets, tables
from cmc.store.buckets import Span
from cmc.store.driver import Tx
from cmc.store.statements import Query, Statement

if TYPE_CHECKING:
    from cmc.sale import Sale


_t = tables.transactions


class Stored(NamedTuple):
    """What a replay (or a session already used) needs of a stored transaction."""

    id: str
    pos_system_id: str
    company_id: str
    pos_transaction_id: str
    request_hash: str
    response: bytes


def _stored(
    id: str, pos_system_id: str, company_id: str, pos_transaction_id: str, request_hash: str, response: Any
) -> Stored:
    # The driver may hand back a memoryview for the response bytes.
    return Stored(id, pos_system_id, company_id, pos_transaction_id, request_hash, bytes(response))


_STORED = (
    *(_t.c.id, _t.c.pos_system_id, _t.c.company_id, _t.c.pos_transaction_id),
    *(_t.c.request_hash, _t.c.response),
)
# Two lookups in one statement, each by its own key. Not one ``WHERE key OR id``: without statistics
# (a new database, or PostgreSQL with autovacuum off) PostgreSQL answered that by the merchant's
# prefix of ``ix_transactions_company_time`` and read every sale of the company, on every sale.
_FIND = Statement(
    union_all(
        select(*_STORED).where(
            _t.c.pos_system_id == bindparam("pos"),
            _t.c.company_id == bindparam("company"),
            _t.c.pos_transaction_id == bindparam("tx"),
        ),
        select(*_STORED).where(_t.c.id == bindparam("session")),
    ),
    name="transactions.find",
    into=_stored,
)
_INSERT = Statement(
    insert(_t).values({c.name: bindparam(c.name) for c in _t.columns}), name="transactions.insert"
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


def find(*, pos_system_id: str, company_id: str, transaction_id: str, session_id: str) -> Query[Stored]:
    """The stored transaction with this POS transaction id, and the one ``session_id`` carried, if any.

    One lookup answers both questions a new sale asks: is it a replay, and is its session used?
    """
    params = {"pos": pos_system_id, "company": company_id, "tx": transaction_id, "session": session_id}
    return Query(_FIND, params)


async def save(tx: Tx, sale: Sale, *, request: bytes, request_hash: str, response: bytes) -> None:
    """Store the sale's transaction (the basket is in the request), its fingerprint, its answer."""
    body = sale.request
    card = next((i.value for i in sale.claim.identifiers if i.kind == "card"), None)
    row = {
        "id": sale.id,
        "pos_system_id": sale.pos.id,
        "company_id": sale.company.id,
        "pos_transaction_id": body.transactionId,
        "location_id": sale.location.id,
        "terminal_id": body.terminalId,
        "transaction_type": body.transactionType or "Undefined",
        "is_reversal": sale.is_reversal,
        "amount": body.transactionAmount,
        "occurred_at": sale.occurred_at,
        "received_at": sale.now,
        "profile_id": sale.profile.id if sale.profile else None,
        "loyalty_card": card,
        "request_hash": request_hash,
        "request": request,
        "response": response,
    }
    # What the unit deferred (the profile's update, the firings, the short link, the screen's event
    # and its NOTIFY) travels with it.
    await tx.execute(_INSERT, row, carry=True)


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


def follow_ups(conn: Connection, exposures: Subquery, *, horizon: datetime) -> list[FollowUp]:
    """The later sales, before ``horizon``, of each customer in ``exposures`` (for the lift).

    ``exposures`` has ``profile_id``, ``variant`` and ``transaction_id`` (the sale the rule fired on,
    whose ``occurred_at`` starts the customer's follow-up): ``cmc.firings.first_firings``. A customer
    without a later sale gets one row without one. Walks ``ix_transactions_profile``.
    """
    exposed, later = _t.alias("exposed"), _t.alias("later")
    query = (
        select(
            exposures.c.profile_id,
            exposures.c.variant,
            exposed.c.occurred_at,
            later.c.occurred_at,
            later.c.amount,
            later.c.is_reversal,
        )
        .join(exposed, exposed.c.id == exposures.c.transaction_id)
        .outerjoin(
            later,
            and_(
                later.c.profile_id == exposures.c.profile_id,
                later.c.occurred_at > exposed.c.occurred_at,
                later.c.occurred_at <= horizon,
            ),
        )
    )
    return [FollowUp(*row) for row in conn.execute(query)]


# --- analytics: a merchant's sales in a window, a customer's visits ---------------------------------


def tender_counts(conn: Connection, span: Span) -> tuple[int, int]:
    """(tenders, tenders with a recognised customer) in the span, by the sale's time.

    Reads ``ix_transactions_company_time`` alone (it holds ``profile_id``).
    """
    query = select(func.count(), func.count(_t.c.profile_id)).where(*span.where(_t, "occurred_at"))
    tenders, identified = conn.execute(query).one()
    return int(tenders), int(identified)


def tender_buckets(conn: Connection, span: Span, bucket: str) -> dict[datetime, int]:
    """Tenders per UTC ``bucket`` in the span."""
    return buckets.counts(conn, _t, "occurred_at", span, bucket)


# --- the roll-up of sales (``cmc.rollup``): by id, since a sale counts by its own, maybe old, time ----


class HourOfSales(NamedTuple):
    """What one merchant sold in one UTC hour, among the sales of an id range."""

    pos_system_id: str
    company_id: str
    hour: datetime
    tenders: int
    identified: int


def sales_by_hour(conn: Connection, *, after: str, before: str) -> list[HourOfSales]:
    """The sales with ``after <= id < before``, per merchant and UTC hour of their time.

    A range of the primary key: a sale's id begins with its session's issue time
    (``cmc.sessions.first_id_at``), so a range of ids is the sales of a stretch of sessions.
    """
    hour = buckets.bucket_of(_t.c.occurred_at, "hour")
    query = (
        select(_t.c.pos_system_id, _t.c.company_id, hour, func.count(), func.count(_t.c.profile_id))
        .where(_t.c.id >= after, _t.c.id < before)
        .group_by(_t.c.pos_system_id, _t.c.company_id, hour)
    )
    return [
        HourOfSales(pos, company, buckets.instant(label, "hour"), int(n), int(known))
        for pos, company, label, n, known in conn.execute(query)
    ]


def id_after(conn: Connection, start: str, *, skip: int) -> str | None:
    """The id ``skip`` sales after ``start`` in id order (where one step of the roll-up stops), or None
    when fewer sales than that sort at or after ``start``."""
    query = select(_t.c.id).where(_t.c.id >= start).order_by(_t.c.id).offset(skip).limit(1)
    found = conn.execute(query).scalar()
    return None if found is None else str(found)


def _above(after: str) -> ColumnElement[bool]:
    return _t.c.id >= after


def unrolled_counts(conn: Connection, span: Span, *, after: str) -> tuple[int, int]:
    """``tender_counts`` of the sales whose id is ``after`` or above (not in the roll-up yet): a range of
    the primary key, the span's conditions checked on each of those few rows."""
    query = select(func.count(), func.count(_t.c.profile_id)).where(
        _above(after), *span.where(_t, "occurred_at", indexed=False)
    )
    tenders, identified = conn.execute(query).one()
    return int(tenders), int(identified)


def unrolled_buckets(conn: Connection, span: Span, bucket: str, *, after: str) -> dict[datetime, int]:
    """``tender_buckets`` of the sales whose id is ``after`` or above (as ``unrolled_counts``)."""
    label = buckets.bucket_of(_t.c.occurred_at, bucket)
    query = (
        select(label, func.count())
        .where(_above(after), *span.where(_t, "occurred_at", indexed=False))
        .group_by(label)
    )
    return {buckets.instant(text, bucket): int(n) for text, n in conn.execute(query)}


def visit_ids(profile_id: str, *, limit: int) -> Select[tuple[str]]:
    """The ids of a customer's newest ``limit`` sales (for the owners of what a sale made: firings,
    links, messages). Bounded, so that a regular's hundreds of visits still make a small probe:
    PostgreSQL otherwise scanned every firing to hash-join them."""
    return select(_t.c.id).where(_t.c.profile_id == profile_id).order_by(_t.c.occurred_at.desc()).limit(limit)


class Visit(msgspec.Struct, frozen=True, rename="camel"):
    """One of a customer's sales, as their timeline shows it."""

    transaction_id: str
    pos_transaction_id: str
    occurred_at: datetime
    location_id: str
    terminal_id: str
    transaction_type: str
    is_reversal: bool
    amount: Decimal | None


def visits(
    conn: Connection, *, pos_system_id: str, company_id: str, profile_id: str, limit: int
) -> list[Visit]:
    """A customer's newest ``limit`` sales, newest first (``ix_transactions_profile``)."""
    # The merchant is checked on the rows the profile's index found (``|| ''`` keeps the planner off
    # the merchant's index: SQLite walked all the merchant's sales by time, 300 ms at 1,000,000).
    mine = _t.c.pos_system_id + "" == pos_system_id, _t.c.company_id + "" == company_id
    query = (
        select(
            _t.c.id,
            _t.c.pos_transaction_id,
            _t.c.occurred_at,
            _t.c.location_id,
            _t.c.terminal_id,
            _t.c.transaction_type,
            _t.c.is_reversal,
            _t.c.amount,
        )
        .where(_t.c.profile_id == profile_id, *mine)
        .order_by(_t.c.occurred_at.desc(), _t.c.id.desc())
        .limit(limit)
    )
    return [Visit(*row) for row in conn.execute(query)]
