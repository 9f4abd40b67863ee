"""Failed credential checks, counted in the database: every statement on ``login_failures``.

Counts are kept per key (a client id, a console user, a source address) in fixed windows of
``CMC_AUTH_FAILURE_WINDOW_SECONDS``; a key at its limit is refused until its window ends. The counts
live in the database so every process, on every node, sees the same ones. Keys are stored hashed:
neither the client ids an attacker types nor the addresses they come from are kept in clear.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, ColumnElement, Connection, case, select
from sqlalchemy.dialects import postgresql, sqlite

from cmc.store import tables

_t = tables.login_failures
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    """How many failures a key may have per window."""

    per_client: int
    per_address: int
    window: timedelta


def key(kind: str, value: str) -> str:
    """The stored form of a key: ``client``/``user``/``address`` and its value, hashed."""
    return hashlib.sha256(f"{kind}\0{value}".encode()).hexdigest()


def window_of(now: datetime, window: timedelta) -> tuple[datetime, datetime]:
    """The fixed window ``now`` falls in: (start, end)."""
    size = window.total_seconds()
    start = _EPOCH + timedelta(seconds=math.floor((now - _EPOCH).total_seconds() / size) * size)
    return start, start + window


def over_limit(conn: Connection, limits: Mapping[str, int], *, now: datetime, window: timedelta) -> set[str]:
    """The keys (each given with its limit) that have reached it in the current window."""
    start, _ = window_of(now, window)
    rows = conn.execute(
        select(_t.c.key, _t.c.failures).where(_t.c.key.in_(list(limits)), _t.c.window_start == start)
    )
    return {found for found, failures in rows if failures >= limits[found]}


def record(conn: Connection, keys: Iterable[str], *, now: datetime, window: timedelta) -> None:
    """Count one failure for each key (a key's count restarts with each window)."""
    start, _ = window_of(now, window)
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    for found in keys:
        upsert = dialect.insert(_t).values(key=found, window_start=start, failures=1)
        conn.execute(
            upsert.on_conflict_do_update(
                index_elements=[_t.c.key],
                set_={
                    "failures": case((_t.c.window_start == start, _t.c.failures + 1), else_=1),
                    "window_start": start,
                },
            )
        )


def prune_targets(before: datetime) -> list[tuple[Column[Any], ColumnElement[bool]]]:
    """Windows that started before ``before`` (for ``cmc prune``)."""
    return [(_t.c.key, _t.c.window_start < before)]
