"""Rule firings: one row per rule that fired for a transaction (what per-customer limits count).

Every statement on ``rule_firings`` is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, bindparam, func, insert, select

from cmc.store import tables
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from cmc.store.types import UtcDateTime

if TYPE_CHECKING:
    from cmc.sale import Sale

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


async def record(tx: Tx, sale: Sale, rules: Sequence[str]) -> None:
    """Store that ``rules`` fired for ``sale``."""
    profile_id = sale.profile.id if sale.profile else None
    scope = {"pos_system_id": sale.pos.id, "company_id": sale.company.id, "transaction_id": sale.id}
    await tx.execute_many(
        _INSERT, [{**scope, "rule": rule, "profile_id": profile_id, "fired_at": sale.now} for rule in rules]
    )


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
