"""Table shorthand for the migrations: ``create_table("notes", "id:s36 note:s1000? created_at:time")``.

A migration is frozen once it has run anywhere, and written out in full its tables are long runs of
near-identical ``sa.Column(...)`` lines, each constraint spelling out the name the naming convention
gives it, that hide what each one creates. The shorthand gives each column as ``name:type``, with
``?`` when it may be null:

- ``s<N>``: ``String(N)``; ``text``, ``blob``, ``json``, ``int``, ``bigint``, ``bool``;
- ``serial``: the autoincrementing integer primary key;
- ``time``: ``UtcDateTime`` (timestamptz / UTC text); ``dec``: ``ExactDecimal`` (NUMERIC / text).

``create_table`` adds a table's key, foreign keys, unique constraints and indexes, named as
``store/tables.py`` names them (``pk_<table>``, ``fk_<table>_<first column>_<referred table>``), in
the order Alembic's autogenerate wrote them, so the schema is the one the long form made.

Migrations only: ``store/tables.py`` declares its columns in full, with their comments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from alembic import op

from cmc.store.types import ExactDecimal, UtcDateTime

_TYPES: dict[str, Callable[[], Any]] = {
    "text": sa.Text,
    "blob": sa.LargeBinary,
    "json": sa.JSON,
    "int": sa.Integer,
    "bigint": sa.BigInteger,
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


def create_table(
    name: str,
    *specs: str,
    key: str = "id",
    refs: Mapping[str, str] | None = None,
    unique: Mapping[str, str] | None = None,
    indexes: Mapping[str, str] | None = None,
) -> sa.Table:
    """Create table ``name`` with the columns of ``specs`` (as ``columns`` reads them), then its indexes.

    The keyword arguments name columns space-separated: ``key``, the primary key; ``refs``, foreign keys
    (``{"pos_system_id company_id": "companies.pos_system_id companies.id"}``), each cascading on
    delete; ``unique``, named unique constraints; ``indexes``, named (non-unique) indexes.
    """
    table = op.create_table(
        name,
        *(column for spec in specs for column in columns(spec)),
        *(_foreign_key(name, local, remote) for local, remote in (refs or {}).items()),
        sa.PrimaryKeyConstraint(*key.split(), name=op.f(f"pk_{name}")),
        *(sa.UniqueConstraint(*cols.split(), name=op.f(uq)) for uq, cols in (unique or {}).items()),
    )
    for index, cols in (indexes or {}).items():
        op.create_index(index, name, cols.split())
    return table


def _foreign_key(table: str, local: str, remote: str) -> sa.ForeignKeyConstraint:
    """``local`` columns referencing ``remote`` ones (``table.column``), deleted with the row they name."""
    referred = remote.partition(".")[0]
    first = local.split()[0]
    return sa.ForeignKeyConstraint(
        local.split(), remote.split(), name=op.f(f"fk_{table}_{first}_{referred}"), ondelete="CASCADE"
    )
