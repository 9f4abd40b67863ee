"""Rule firings: one row per rule that fired for a transaction (what per-customer limits count).

A firing carries its variant: ``treatment`` (the rule did what it says) or ``holdout`` (the
customer is in the rule's holdout, ``cmc.holdout``: nothing was shown or sent). Limits count both,
so a customer of either arm meets the rule as often. Every statement on ``rule_firings`` is here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    Subquery,
    bindparam,
    cast,
    func,
    select,
)

from cmc.store import buckets, tables
from cmc.store.buckets import Span
from cmc.store.driver import Tx
from cmc.store.statements import Statement, Write
from cmc.store.types import UtcDateTime

if TYPE_CHECKING:
    from cmc.sale import Sale

_f = tables.rule_firings
_COLUMNS = [c.name for c in _f.columns if c.name != "id"]


@functools.cache
def _insert(count: int) -> Write:
    """A sale's ``count`` firings in one insert, deferred: the sale's insert carries it on PostgreSQL."""
    return Write.insert(_f, name=f"firings.insert[{count}]", prefix="firing_", columns=_COLUMNS, rows=count)


_USAGE = Statement(
    select(func.count()).where(
        _f.c.pos_system_id == bindparam("pos"),
        _f.c.company_id == bindparam("company"),
        _f.c.profile_id == bindparam("profile"),
        _f.c.rule == bindparam("rule"),
        _f.c.fired_at >= bindparam("since", type_=UtcDateTime),
    ),
    name="firings.usage",
)


async def record(tx: Tx, sale: Sale, rules: Sequence[str], *, held_out: Sequence[str] = ()) -> None:
    """Store that ``rules`` fired for ``sale`` (as treatment) and ``held_out`` (as holdout)."""
    profile_id = sale.profile.id if sale.profile else None
    scope = {
        "pos_system_id": sale.pos.id,
        "company_id": sale.company.id,
        "transaction_id": sale.id,
        "amount": sale.request.transactionAmount,
    }
    arms = [*((rule, "treatment") for rule in rules), *((rule, "holdout") for rule in held_out)]
    rows = [
        {**scope, "rule": rule, "profile_id": profile_id, "fired_at": sale.now, "variant": variant}
        for rule, variant in arms
    ]
    if rows:
        write = _insert(len(rows))
        await tx.defer(write, write.of_rows(rows))


async def usage(
    tx: Tx, *, pos_system_id: str, company_id: str, profile_id: str, rule: str, since: datetime
) -> int:
    """How often ``rule`` fired for this customer since ``since``."""
    params = {
        "pos": pos_system_id,
        "company": company_id,
        "profile": profile_id,
        "rule": rule,
        "since": since,
    }
    row = await tx.first(_USAGE, params)
    return int(row[0]) if row else 0


def counts_by_rule(conn: Connection) -> dict[str, int]:
    """Firings per rule name, over everything stored (for ``cmc demo``'s report)."""
    return dict(conn.execute(select(_f.c.rule, func.count()).group_by(_f.c.rule)).tuples().all())


def first_firings(
    *, pos_system_id: str, company_id: str, rule: str, since: datetime | None, until: datetime
) -> Subquery:
    """Each customer's first firing of ``rule`` in ``[since, until)``: profile_id, variant, transaction_id.

    A subquery, for the owner of ``transactions`` to follow those customers (the lift). Walks
    ``ix_rule_firings_rule``: the rule's firings customer by customer, in time order.
    """
    window = [_f.c.fired_at < until] + ([_f.c.fired_at >= since] if since is not None else [])
    order = func.row_number().over(partition_by=_f.c.profile_id, order_by=(_f.c.fired_at, _f.c.id))
    ranked = (
        select(_f.c.profile_id, _f.c.variant, _f.c.transaction_id, order.label("n"))
        .where(
            _f.c.rule == rule,
            _f.c.pos_system_id == pos_system_id,
            _f.c.company_id == company_id,
            # Not ``IS NOT NULL``: a range on the profile is what makes SQLite walk this rule's
            # slice of ix_rule_firings_rule rather than every firing of the company in the window
            # (a profile id is never empty, so the two mean the same).
            _f.c.profile_id > "",
            *window,
        )
        .subquery("ranked")
    )
    first = select(ranked.c.profile_id, ranked.c.variant, ranked.c.transaction_id).where(ranked.c.n == 1)
    return first.subquery("exposures")


def variant_counts(
    conn: Connection, *, pos_system_id: str, company_id: str, since: datetime, until: datetime
) -> dict[tuple[str, str], tuple[int, int]]:
    """Firings and distinct customers per (rule, variant) in ``[since, until)`` (for analytics)."""
    query = (
        select(_f.c.rule, _f.c.variant, func.count(), func.count(func.distinct(_f.c.profile_id)))
        .where(
            _f.c.pos_system_id == pos_system_id,
            _f.c.company_id == company_id,
            _f.c.fired_at >= since,
            _f.c.fired_at < until,
        )
        .group_by(_f.c.rule, _f.c.variant)
    )
    return {(rule, variant): (int(n), int(people)) for rule, variant, n, people in conn.execute(query)}


# --- analytics: a merchant's firings in a window, a customer's firings --------------------------------


def per_variant(conn: Connection, span: Span) -> dict[str, int]:
    """Firings per variant in the span (``ix_rule_firings_company_time`` alone)."""
    query = select(_f.c.variant, func.count()).where(*span.where(_f, "fired_at")).group_by(_f.c.variant)
    return {variant: int(n) for variant, n in conn.execute(query)}


def influenced_revenue(conn: Connection, span: Span) -> Decimal:
    """The sum of the sales a rule fired on (treatment) in the span, each sale once.

    Read from ``ix_rule_firings_company_time`` alone: it holds each firing's sale and amount.
    """
    return _influenced(conn, span, None).get(None, Decimal(0))


def influenced_by_hour(conn: Connection, span: Span) -> dict[datetime, Decimal]:
    """``influenced_revenue`` per UTC hour (for the roll-up): a sale's firings share its hour."""
    return {hour: total for hour, total in _influenced(conn, span, "hour").items() if hour is not None}


def _influenced(conn: Connection, span: Span, bucket: str | None) -> dict[datetime | None, Decimal]:
    label = [] if bucket is None else [buckets.bucket_of(_f.c.fired_at, bucket).label("bucket")]
    sales = (
        select(_f.c.transaction_id, _f.c.amount, *label)
        .where(*span.where(_f, "fired_at"), _f.c.variant == "treatment")
        .distinct()
        .subquery()
    )
    if conn.dialect.name == "postgresql":  # NUMERIC: the database sums exactly
        total: ColumnElement[Any] = func.sum(sales.c.amount)
        exact: Callable[[Any], Decimal] = Decimal
    else:
        # SQLite keeps amounts as text (``ExactDecimal``), and its sum of them would be a float's:
        # summed instead as whole millionths (NUMERIC(24, 6)'s scale), exact up to 9,000,000,000 a sale.
        total = func.sum(cast(func.round(cast(sales.c.amount, Float) * 1_000_000), Integer))
        exact = lambda micros: Decimal(int(micros)).scaleb(-6)  # noqa: E731
    by = [sales.c.bucket] if bucket is not None else []
    found: dict[datetime | None, Decimal] = {}
    for *key, amount in conn.execute(select(*by, total).group_by(*by)):
        if amount is not None:
            found[buckets.instant(key[0], bucket) if bucket is not None else None] = exact(amount)
    return found


def by_hour(conn: Connection, span: Span) -> dict[tuple[Any, ...], int]:
    """Firings per (UTC hour, rule, variant) in the span (for the roll-up)."""
    return buckets.grouped(conn, _f, "fired_at", span, "hour", [_f.c.rule, _f.c.variant])


def earliest(conn: Connection, *, pos_system_id: str, company_id: str) -> datetime | None:
    """When the merchant's first firing was recorded."""
    return buckets.earliest(conn, _f, "fired_at", pos_system_id, company_id)


def firing_buckets(conn: Connection, span: Span, bucket: str, rule: str | None = None) -> dict[datetime, int]:
    """Firings (both variants) per UTC ``bucket`` in the span, of one rule or all."""
    return buckets.counts(conn, _f, "fired_at", span, bucket, *([] if rule is None else [_f.c.rule == rule]))


class Firing(msgspec.Struct, frozen=True, rename="camel"):
    """A rule that fired (or held out) for one of a customer's sales."""

    rule: str
    variant: str
    transaction_id: str
    fired_at: datetime


def of_sales(conn: Connection, sales: Select[tuple[str]], *, limit: int) -> list[Firing]:
    """The firings of the sales ``sales`` selects, newest first (``ix_rule_firings_transaction``)."""
    query = (
        select(_f.c.rule, _f.c.variant, _f.c.transaction_id, _f.c.fired_at)
        .where(_f.c.transaction_id.in_(sales))
        .order_by(_f.c.fired_at.desc(), _f.c.id.desc())
        .limit(limit)
    )
    return [Firing(*row) for row in conn.execute(query)]
