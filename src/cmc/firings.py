"""Rule firings: one row per rule that fired for a transaction (what per-customer limits count).

Every statement on ``rule_firings`` is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert, select

from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc.store.types import UtcDateTime

_f = tables.rule_firings
_INSERT = Statement(insert(_f), name="firings.insert", keys=[c.name for c in _f.columns if c.name != "id"])
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


@dataclass(frozen=True)
class Firing:
    """One rule that fired for one transaction."""

    pos_system_id: str
    company_id: str
    rule: str
    profile_id: str | None
    transaction_id: str
    fired_at: datetime


async def record(tx: Tx, firings: Sequence[Firing]) -> None:
    """Store the firings of one transaction."""
    if firings:
        await tx.execute_many(_INSERT, [vars(f) for f in firings])


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
