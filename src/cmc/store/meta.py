"""The ``meta`` table: small service-wide values (the registry version, generated keys).

Every statement on ``meta`` is here; callers name their key.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from cmc.store import tables

_m = tables.meta


def get(conn: Connection, key: str) -> str | None:
    """The value of ``key``, or None."""
    value = conn.execute(select(_m.c.value).where(_m.c.key == key)).scalar()
    return None if value is None else str(value)


def get_or_create(conn: Connection, key: str, make: str) -> str:
    """The value of ``key``; stores ``make`` first when there is none (a generated key, say)."""
    value = get(conn, key)
    if value is None:
        conn.execute(insert(_m).values(key=key, value=make))
        value = make
    return value


def increment(conn: Connection, key: str) -> int:
    """Add one to the integer value of ``key`` (0 when missing); returns the new value."""
    value = int(get(conn, key) or 0) + 1
    put(conn, key, str(value))
    return value


def put(conn: Connection, key: str, value: str) -> None:
    """Set ``key`` to ``value``."""
    if not conn.execute(update(_m).where(_m.c.key == key).values(value=value)).rowcount:
        conn.execute(insert(_m).values(key=key, value=value))
