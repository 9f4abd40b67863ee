"""Named locks for one transaction: concurrent units that touch the same thing take turns.

On PostgreSQL each name becomes a transaction-scoped advisory lock (``pg_advisory_xact_lock``),
taken in one statement and in a fixed order (sorted keys), so two units asking for overlapping names
never deadlock; they are released at commit or rollback. Locks come first in a unit, so the
transaction's ``BEGIN`` travels in the same message (``Tx.open_with``): one round trip for both.
SQLite needs none: its single writer (``BEGIN IMMEDIATE``) already serializes every write
transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cmc.store.driver import Tx

_LOCK = (
    "SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT unnest(ARRAY[{keys}]::bigint[]) AS k ORDER BY 1)"
    " AS ordered"
)
"""In key order, whatever order the array is in: two units locking overlapping names cannot deadlock."""


def key(name: str) -> int:
    """The advisory lock key of ``name``: 64 bits of its SHA-256, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


async def take(tx: Tx, names: Iterable[str]) -> None:
    """Hold a lock on each of ``names`` until ``tx`` ends (PostgreSQL; SQLite needs none)."""
    if tx.dialect != "postgresql":
        return
    keys = sorted({key(name) for name in names})
    if keys:
        # Literal integers (our own hashes), so that the transaction's BEGIN can travel with it.
        await tx.open_with(_LOCK.format(keys=",".join(map(str, keys))))
