"""What analytics counts in SQL, the same way on both engines: a merchant's rows in a time window,
per UTC hour or day.

``Span`` is the window (a merchant, ``[since, until)``) and the conditions it puts on a tenant table
(every one leads with ``pos_system_id, company_id``). ``bucket_of(column, bucket)`` is an instant's
bucket as text: ``YYYY-MM-DD HH`` for an hour, ``YYYY-MM-DD`` for a day, in UTC. On SQLite an
instant is already UTC text in that order (``cmc.store.types.UtcDateTime``), so the label is its
prefix; on PostgreSQL it is the timestamptz formatted in UTC (whatever the session's time zone).
``counts`` groups a table's rows in a span by it and turns the labels back into aware datetimes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import Column, ColumnElement, Connection, String, Table, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

LABEL = {"hour": ("%Y-%m-%d %H", 13, "YYYY-MM-DD HH24"), "day": ("%Y-%m-%d", 10, "YYYY-MM-DD")}
"""Per bucket: the label's strptime format, its length on SQLite, its to_char format on PostgreSQL."""


class Span(NamedTuple):
    """One merchant's rows from ``since`` (included) to ``until`` (excluded)."""

    pos_system_id: str
    company_id: str
    since: datetime
    until: datetime

    def where(self, table: Table, time: str, *, indexed: bool = True) -> list[ColumnElement[bool]]:
        """The conditions: the table's merchant columns, and its instant column ``time`` in the window.

        ``indexed=False`` keeps SQLite from choosing an index for them (``unindexed``): for a query
        that walks another index, a few rows of which these conditions then filter.
        """
        c = table.c
        column: Callable[[str], ColumnElement[Any]] = (lambda name: c[name]) if indexed else (
            lambda name: unindexed(c[name])
        )  # fmt: skip
        return [
            column("pos_system_id") == self.pos_system_id,
            column("company_id") == self.company_id,
            column(time) >= self.since,
            column(time) < self.until,
        ]

    def part(self, since: datetime, until: datetime) -> Span | None:
        """The same merchant over ``[since, until)`` cut to this span; None when nothing is left."""
        start, end = max(since, self.since), min(until, self.until)
        return self._replace(since=start, until=end) if start < end else None


class bucket_of(FunctionElement[str]):  # a SQL function, named like one
    """The UTC hour or day of an instant column, as text."""

    type = String()
    inherit_cache = False  # the bucket is not part of SQLAlchemy's cache key: compile each time

    def __init__(self, column: ColumnElement[Any], bucket: str) -> None:
        if bucket not in LABEL:
            raise ValueError(f"unknown bucket {bucket!r}")
        self.bucket = bucket
        super().__init__(column)


class unindexed(FunctionElement[Any]):  # a SQL expression, named like a function
    """A column SQLite must not pick an index by: ``+column`` there (its documented way to say so),
    the column itself on PostgreSQL (which plans by its statistics)."""

    inherit_cache = True

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.type = column.type
        super().__init__(column)


@compiles(unindexed, "sqlite")
def _sqlite_unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


@compiles(unindexed, "postgresql")
def _postgresql_unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(bucket_of, "sqlite")
def _sqlite(element: bucket_of, compiler: SQLCompiler, **kw: Any) -> str:
    return f"substr({compiler.process(element.clauses, **kw)}, 1, {LABEL[element.bucket][1]})"


@compiles(bucket_of, "postgresql")
def _postgresql(element: bucket_of, compiler: SQLCompiler, **kw: Any) -> str:
    column = compiler.process(element.clauses, **kw)
    return f"to_char({column} AT TIME ZONE 'UTC', '{LABEL[element.bucket][2]}')"


def counts(
    conn: Connection, table: Table, time: str, span: Span, bucket: str, *where: ColumnElement[bool]
) -> dict[datetime, int]:
    """The rows of ``table`` in ``span`` (by its column ``time``) and ``where``, per bucket (empty
    buckets absent)."""
    label = bucket_of(table.c[time], bucket)
    rows = conn.execute(select(label, func.count()).where(*span.where(table, time), *where).group_by(label))
    return {instant(text, bucket): int(n) for text, n in rows}


def instant(label: str, bucket: str) -> datetime:
    """The start of the bucket a ``bucket_of`` label names, in UTC."""
    return datetime.strptime(label, LABEL[bucket][0]).replace(tzinfo=UTC)


def grouped(
    conn: Connection,
    table: Table,
    time: str,
    span: Span,
    bucket: str,
    by: Sequence[Column[Any]],
    *where: ColumnElement[bool],
) -> dict[tuple[Any, ...], int]:
    """Like ``counts``, per bucket and per the values of the columns ``by``: (bucket, *values) → rows."""
    label = bucket_of(table.c[time], bucket)
    query = select(label, *by, func.count()).where(*span.where(table, time), *where).group_by(label, *by)
    return {(instant(text, bucket), *values): int(n) for text, *values, n in conn.execute(query)}


def earliest(
    conn: Connection, table: Table, time: str, pos_system_id: str, company_id: str
) -> datetime | None:
    """The merchant's first instant in ``table``'s column ``time`` (one probe of its merchant-time index)."""
    c = table.c
    found = conn.execute(
        select(func.min(c[time])).where(c.pos_system_id == pos_system_id, c.company_id == company_id)
    ).scalar()
    return found if found is None or isinstance(found, datetime) else None
