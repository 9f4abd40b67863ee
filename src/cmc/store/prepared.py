"""Hot-path statements: a Core statement compiled once per dialect, run on the driver's own cursor.

SQLAlchemy's execution machinery (execution context, events, result wrapping) costs about as much
as the SQLite work of a small INSERT, and the tender path runs a dozen statements. ``Prepared`` keeps
each statement written once in Core (so both dialects get their own SQL and their own parameter
conversions), compiles it once per dialect, and executes it on the DBAPI connection inside the
caller's transaction. Rows come back as the driver's plain tuples: result types are not converted,
so hot-path queries select only columns whose driver value is already what the caller needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_Compiled = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...]]


class Prepared:
    """A write statement (INSERT/UPDATE/DELETE with bind parameters) ready to run without ceremony."""

    def __init__(self, statement: ClauseElement, *, keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.keys = list(keys) if keys is not None else None
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is not None:
            return compiled
        c = self.statement.compile(dialect=dialect, column_keys=self.keys)
        assert isinstance(c, SQLCompiler)
        names = tuple(c.positiontup or ())
        # The bind processors are the column types' own conversions (decimals, UTC instants).
        found = c._bind_processors
        processors = tuple(p if callable(p) else None for p in (found.get(name) for name in names))
        self._compiled[dialect.name] = (c.string, names, processors)
        return self._compiled[dialect.name]

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run once with ``params``; returns the number of rows affected."""
        with self._cursor(conn, params) as cursor:
            return int(cursor.rowcount)

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a query, as the driver returns it."""
        with self._cursor(conn, params) as cursor:
            row = cursor.fetchone()
            return None if row is None else tuple(row)

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a query, as the driver returns them."""
        with self._cursor(conn, params) as cursor:
            return [tuple(row) for row in cursor.fetchall()]

    def execute_many(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run once per row of parameters."""
        with self._cursor(conn, None, many=rows):
            pass

    @contextlib.contextmanager
    def _cursor(
        self, conn: Connection, params: Mapping[str, Any] | None, *, many: Iterable[Mapping[str, Any]] = ()
    ) -> Iterator[Any]:
        sql, names, processors = self._for(conn.dialect)
        dbapi = conn.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if params is not None:
                cursor.execute(sql, _args(params, names, processors))
            else:
                cursor.executemany(sql, [_args(row, names, processors) for row in many])
            yield cursor
        except dbapi.Error as exc:
            # The same exception classes SQLAlchemy raises (IntegrityError for a unique-key race...).
            raise DBAPIError.instance(sql, params, exc, dbapi.Error, dialect=conn.dialect) from exc
        finally:
            cursor.close()


def _args(
    params: Mapping[str, Any], names: tuple[str, ...], processors: tuple[Callable[[Any], Any] | None, ...]
) -> tuple[Any, ...]:
    return tuple(
        value if (process := processors[i]) is None or value is None else process(value)
        for i, value in enumerate(params[name] for name in names)
    )
