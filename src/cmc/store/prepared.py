"""Hot-path statements: a Core statement compiled once per dialect, run on the driver's own cursor.

SQLAlchemy's execution machinery (execution context, events, result wrapping) costs about as much
as the SQLite work of a small INSERT, and the tender path runs a dozen statements. ``Prepared`` keeps
each statement written once in Core (so both dialects get their own SQL and their own parameter
conversions), compiles it once per dialect, and executes it on the DBAPI connection inside the
caller's transaction. Rows come back as the driver's plain tuples: result types are not converted,
so hot-path queries select only columns whose driver value is already what the caller needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

_Compiled = tuple[str, tuple[str, ...], tuple[Callable[[Any], Any] | None, ...], dict[str, Any]]


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
        # Values written into the statement itself (``.values(status="sent")``) travel as binds too.
        fixed = {name: c.binds[name].value for name in names if not c.binds[name].required}
        self._compiled[dialect.name] = (c.string, names, processors, fixed)
        return self._compiled[dialect.name]

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run once with ``params``; returns the number of rows affected."""
        cursor = self._run(conn, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row of a query, as the driver returns it."""
        cursor = self._run(conn, params)
        try:
            row = cursor.fetchone()
            return None if row is None else tuple(row)
        finally:
            cursor.close()

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of a query, as the driver returns them."""
        cursor = self._run(conn, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def execute_many(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run once per row of parameters."""
        self._run(conn, None, many=rows).close()

    def execute_many_count(self, conn: Connection, rows: Iterable[Mapping[str, Any]]) -> int:
        """Run once per row of parameters; returns the total number of rows affected."""
        cursor = self._run(conn, None, many=rows)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _run(
        self, conn: Connection, params: Mapping[str, Any] | None, *, many: Iterable[Mapping[str, Any]] = ()
    ) -> Any:
        """Execute on a new driver cursor (the caller closes it); driver errors become SQLAlchemy's."""
        sql, names, processors, fixed = self._compiled.get(conn.dialect.name) or self._for(conn.dialect)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if params is not None:
                cursor.execute(sql, _args({**fixed, **params} if fixed else params, names, processors))
            else:
                rows = [{**fixed, **row} for row in many] if fixed else many
                cursor.executemany(sql, [_args(row, names, processors) for row in rows])
        except Exception as exc:
            cursor.close()
            dbapi = conn.dialect.loaded_dbapi
            if isinstance(exc, dbapi.Error):
                # The same exception classes SQLAlchemy raises (IntegrityError for a unique-key race...).
                raise DBAPIError.instance(sql, params, exc, dbapi.Error, dialect=conn.dialect) from exc
            raise
        return cursor


def _args(
    params: Mapping[str, Any], names: tuple[str, ...], processors: tuple[Callable[[Any], Any] | None, ...]
) -> list[Any]:
    values = [params[name] for name in names]
    for i, process in enumerate(processors):
        if process is not None and values[i] is not None:
            values[i] = process(values[i])
    return values
