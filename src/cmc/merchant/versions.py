"""Marketing versions: every statement on ``marketing_versions`` and ``marketing_active``.

A version is a company's marketing setup ``Document`` as JSON, numbered 1, 2, 3... per company and
never changed once written (only ``activated_at`` is set, the first time it goes live). Which one is
live is one row per company in ``marketing_active``, moved by compare-and-set, so two publishers
racing on two processes cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, and_, func, insert, select, update

from cmc.merchant.wire import Source, Status
from cmc.store import tables
from cmc.store.tables import of_company

_v = tables.marketing_versions
_a = tables.marketing_active


@dataclass(frozen=True)
class Version:
    """One stored version, with its status as of the read."""

    version: int
    status: Status
    document: dict[str, Any]
    source: Source
    created_by: str
    created_at: datetime
    note: str | None


def _version(row: Row[Any], active: int | None) -> Version:
    status: Status = "active" if row.version == active else "retired" if row.activated_at else "draft"
    return Version(
        version=row.version,
        status=status,
        document=row.document,
        source=row.source,
        created_by=row.created_by,
        created_at=row.created_at,
        note=row.note,
    )


def active_number(conn: Connection, pos_system_id: str, company_id: str) -> int | None:
    """The number of the live version (None before the company has one)."""
    found = conn.execute(select(_a.c.version).where(of_company(_a, pos_system_id, company_id))).scalar()
    return None if found is None else int(found)


def get(conn: Connection, pos_system_id: str, company_id: str, version: int) -> Version | None:
    """Version ``version`` of the company, or None."""
    row = conn.execute(
        select(_v).where(of_company(_v, pos_system_id, company_id), _v.c.version == version)
    ).first()
    return None if row is None else _version(row, active_number(conn, pos_system_id, company_id))


def active(conn: Connection, pos_system_id: str, company_id: str) -> Version | None:
    """The live version of the company, or None."""
    number = active_number(conn, pos_system_id, company_id)
    return None if number is None else get(conn, pos_system_id, company_id, number)


def listing(conn: Connection, pos_system_id: str, company_id: str) -> list[Version]:
    """Every version of the company, newest first."""
    number = active_number(conn, pos_system_id, company_id)
    rows = conn.execute(
        select(_v).where(of_company(_v, pos_system_id, company_id)).order_by(_v.c.version.desc())
    )
    return [_version(row, number) for row in rows]


def last_from(conn: Connection, pos_system_id: str, company_id: str, source: Source) -> Version | None:
    """The newest version that came from ``source`` (``cmc apply`` compares its file with it)."""
    row = conn.execute(
        select(_v)
        .where(of_company(_v, pos_system_id, company_id), _v.c.source == source)
        .order_by(_v.c.version.desc())
        .limit(1)
    ).first()
    return None if row is None else _version(row, active_number(conn, pos_system_id, company_id))


def create(
    conn: Connection,
    pos_system_id: str,
    company_id: str,
    document: dict[str, Any],
    *,
    source: Source,
    created_by: str,
    note: str | None,
    now: datetime,
) -> int:
    """Store a new draft version; returns its number (one more than the newest).

    Two drafts created at once for one company collide on the primary key: the caller's
    transaction fails and is retried (``idempotency.once``).
    """
    company = {"pos_system_id": pos_system_id, "company_id": company_id}
    newest = conn.execute(select(func.max(_v.c.version)).where(of_company(_v, **company))).scalar()
    number = int(newest or 0) + 1
    about = {"source": source, "created_by": created_by, "note": note}
    conn.execute(insert(_v).values(**company, version=number, document=document, **about, created_at=now))
    return number


def move_active(
    conn: Connection, pos_system_id: str, company_id: str, *, to: int, expected: int | None, now: datetime
) -> bool:
    """Make version ``to`` live if version ``expected`` still is (None: the company has none yet).

    Returns False, changing nothing, when another activation got there first.
    """
    where = of_company(_a, pos_system_id, company_id)
    if expected is None:
        if active_number(conn, pos_system_id, company_id) is not None:
            return False
        conn.execute(insert(_a).values(pos_system_id=pos_system_id, company_id=company_id, version=to))
    elif not conn.execute(update(_a).where(where, _a.c.version == expected).values(version=to)).rowcount:
        return False
    conn.execute(
        update(_v)
        .where(of_company(_v, pos_system_id, company_id), _v.c.version == to, _v.c.activated_at.is_(None))
        .values(activated_at=now)
    )
    return True


def active_documents(conn: Connection) -> dict[tuple[str, str], tuple[int, dict[str, Any]]]:
    """(posSystemId, companyId) → (number, document) of every live version (the registry snapshot)."""
    joined = _a.join(
        _v,
        and_(
            _v.c.pos_system_id == _a.c.pos_system_id,
            _v.c.company_id == _a.c.company_id,
            _v.c.version == _a.c.version,
        ),
    )
    rows = conn.execute(
        select(_a.c.pos_system_id, _a.c.company_id, _v.c.version, _v.c.document).select_from(joined)
    )
    return {(row.pos_system_id, row.company_id): (row.version, row.document) for row in rows}


def active_branding_column(pos_system_id: ColumnElement[str], company_id: ColumnElement[str]) -> Any:
    """The live version's ``branding`` of the company these columns name, for use inside a query."""
    live = and_(
        _a.c.pos_system_id == pos_system_id,
        _a.c.company_id == company_id,
        _v.c.pos_system_id == _a.c.pos_system_id,
        _v.c.company_id == _a.c.company_id,
        _v.c.version == _a.c.version,
    )
    return select(_v.c.document["branding"]).where(live).scalar_subquery()
