"""Column shorthand for the migrations: ``columns("id:s36 note:s1000? created_at:time")``.

A migration is frozen once it has run anywhere, and written out in full its tables are long runs of
near-identical ``sa.Column(...)`` lines that hide what each one creates. The shorthand gives each
column as ``name:type``, with ``?`` when it may be null:

- ``s<N>``: ``String(N)``; ``text``, ``blob``, ``json``, ``int``, ``bool``;
- ``serial``: the autoincrementing integer primary key;
- ``time``: ``UtcDateTime`` (timestamptz / UTC text); ``dec``: ``ExactDecimal`` (NUMERIC / text).

Migrations only: ``store/tables.py`` declares its columns in full, with their comments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from cmc.store.types import ExactDecimal, UtcDateTime

_TYPES: dict[str, Callable[[], Any]] = {
    "text": sa.Text,
    "blob": sa.LargeBinary,
    "json": sa.JSON,
    "int": sa.Integer,
    "bool": sa.Boolean,
    "serial": sa.Integer,
    "time": lambda: UtcDateTime(timezone=True),
    "dec": lambda: ExactDecimal(length=40),
}


def columns(spec: str) -> list[sa.Column[Any]]:
    """The columns ``spec`` names, in its order (whitespace-separated ``name:type[?]``)."""
    return [column(item) for item in spec.split()]


def column(item: str) -> sa.Column[Any]:
    """One ``name:type[?]`` column."""
    name, _, kind = item.partition(":")
    nullable = kind.endswith("?")
    kind = kind.removesuffix("?")
    if kind.startswith("s") and kind[1:].isdigit():
        made: Any = sa.String(length=int(kind[1:]))
    elif kind in _TYPES:
        made = _TYPES[kind]()
    else:
        raise ValueError(f"column {name!r}: unknown type {kind!r}")
    if kind == "serial":
        return sa.Column(name, made, autoincrement=True, nullable=False)
    return sa.Column(name, made, nullable=nullable)
