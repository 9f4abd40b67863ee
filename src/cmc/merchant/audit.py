"""The marketing audit trail: every statement on ``marketing_audit``.

One entry per draft, activation and ``cmc apply`` change, written in the same database transaction
as the change itself, so the trail never misses one nor names one that did not happen. Read newest
first, a page at a time: the cursor is the id of the last entry a page held.
"""

from __future__ import annotations

import msgspec
from sqlalchemy import Connection, insert, select

from cmc.merchant.wire import AuditEntry
from cmc.store import tables

PAGE = 50

_t = tables.marketing_audit


def record(conn: Connection, pos_system_id: str, company_id: str, entry: AuditEntry) -> None:
    """Add an entry (in the caller's transaction: it commits with the change it describes)."""
    values = msgspec.structs.asdict(entry)
    conn.execute(insert(_t).values(pos_system_id=pos_system_id, company_id=company_id, **values))


def page(
    conn: Connection, pos_system_id: str, company_id: str, *, after: int | None, size: int = PAGE
) -> tuple[list[AuditEntry], int | None]:
    """Up to ``size`` entries, newest first, older than entry ``after``; and the cursor of the next page."""
    columns = [_t.c[name] for name in AuditEntry.__struct_fields__]
    query = select(_t.c.id, *columns).where(
        _t.c.pos_system_id == pos_system_id, _t.c.company_id == company_id
    )
    if after is not None:
        query = query.where(_t.c.id < after)
    rows = conn.execute(query.order_by(_t.c.id.desc()).limit(size + 1)).all()
    following = rows[size - 1].id if len(rows) > size else None
    return [AuditEntry(*row[1:]) for row in rows[:size]], following
