"""The ``meta`` table: small service-wide values (the registry version, generated keys).

Every statement on ``meta`` is here; callers name their key.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from cmc.store import tables

_m = tables.meta


def get(conn: Connection, key: str, *, lock: bool = False) -> str | None:
    """The value of ``key``, or None; ``lock`` holds its row until the transaction ends (PostgreSQL:
    another transaction locking it waits, then reads what this one stored)."""
    query = select(_m.c.value).where(_m.c.key == key)
    value = conn.execute(query.with_for_update() if lock else query).scalar()
    return None if value is None else str(value)


def get_or_create(conn: Connection, key: str, make: str) -> str:
    """The value of ``key``; stores ``make`` first when there is none (a generated key, say).

    Processes starting at once on a new database race here: the loser's insert fails on the key, and
    it takes the winner's value.
    """
    value = get(conn, key)
    if value is not None:
        return value
    if _insert(conn, key, make):
        return make
    stored = get(conn, key)
    assert stored is not None, "the key's insert failed, so a row has it"
    return stored


def increment(conn: Connection, key: str) -> int:
    """Add one to the integer value of ``key`` (0 when missing); returns the new value."""
    value = int(get(conn, key) or 0) + 1
    put(conn, key, str(value))
    return value


def put(conn: Connection, key: str, value: str) -> None:
    """Set ``key`` to ``value`` (a concurrent first write of the same key is overwritten, not an error)."""
    if conn.execute(update(_m).where(_m.c.key == key).values(value=value)).rowcount:
        return
    if not _insert(conn, key, value):
        conn.execute(update(_m).where(_m.c.key == key).values(value=value))


def _insert(conn: Connection, key: str, value: str) -> bool:
    """Insert ``key``; False when another transaction stored it first (ours goes on, unharmed)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(_m).values(key=key, value=value))
    except IntegrityError:
        return False
    return True
