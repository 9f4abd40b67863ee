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

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Connection, String, Table, func, select
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

    def where(self, table: Table, time: str) -> list[ColumnElement[bool]]:
        """The conditions: the table's merchant columns, and its instant column ``time`` in the window."""
        c = table.c
        return [
            c.pos_system_id == self.pos_system_id,
            c.company_id == self.company_id,
            c[time] >= self.since,
            c[time] < self.until,
        ]


class bucket_of(FunctionElement[str]):  # a SQL function, named like one
    """The UTC hour or day of an instant column, as text."""

    type = String()
    inherit_cache = False  # the bucket is not part of SQLAlchemy's cache key: compile each time

    def __init__(self, column: ColumnElement[Any], bucket: str) -> None:
        if bucket not in LABEL:
            raise ValueError(f"unknown bucket {bucket!r}")
        self.bucket = bucket
        super().__init__(column)


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
    fmt = LABEL[bucket][0]
    return {datetime.strptime(text, fmt).replace(tzinfo=UTC): int(n) for text, n in rows}
