"""Driver transactions: ``Statement``s run on the stdlib sqlite3 or the asyncpg connection directly.

A unit of work on the hot path is ``async def unit(tx: Tx, ...)``: it runs statements with
``await tx.first(...)`` and friends, and decides in plain Python between them. ``Database.transact``
opens the transaction, runs the unit, commits.

- On PostgreSQL each call is one round trip on an asyncpg connection (statements are prepared
  once per connection by asyncpg's statement cache); no greenlet, no SQLAlchemy execution context.
- On SQLite the calls are synchronous underneath: the coroutine never suspends, so it is driven to
  completion without an event loop (``run_to_completion``), on the loop's thread or in the writer
  thread alike. A unit that awaited anything else would be a bug, and is reported as one.

Driver errors become the store's own (``DuplicateKey``, ``Contention``, ``StoreUnavailable``) carrying
the SQLSTATE only: a driver's message can quote the row (an email in a duplicate key), and these
errors end up in logs.
"""

from __future__ import annotations

import abc
import contextlib
import sqlite3
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from cmc.errors import Contention, DuplicateKey, StoreError, StoreUnavailable
from cmc.store import failures
from cmc.store.statements import Query, Statement, Write, carrying, together

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")
B = TypeVar("B")
Params = Mapping[str, Any] | None


class Tx(abc.ABC):
    """One open database transaction, as a unit of work sees it.

    The statement handling (SQL and conversions for the dialect) is here; each driver only sends SQL
    with positional arguments and hands back the driver's rows.
    """

    dialect: str

    def __init__(self) -> None:
        self._deferred: list[tuple[Write, dict[str, Any]]] = []

    async def execute(self, statement: Statement[Any], params: Params = None, *, carry: bool = False) -> int:
        """Run a write; returns the number of rows it affected.

        ``carry``: the writes deferred so far (``defer``) travel in this statement, on PostgreSQL.
        """
        values: Mapping[str, Any] = params or {}
        if self._deferred:
            # A carrier on a deferred write's table would not see it (one snapshot for all): that
            # write runs first, like before any other statement on its table.
            if carry and not self._overlaps(statement):
                writes, self._deferred = self._deferred, []
                statement = carrying(statement, [write for write, _ in writes])
                values = {**values}
                for _, deferred in writes:
                    values.update(deferred)
            else:
                await self._flush_for(statement)
        compiled = statement.compiled(self.dialect)
        return await self._execute(compiled.sql, compiled.args(values))

    async def defer(self, write: Write, params: Mapping[str, Any]) -> None:
        """Do ``write``, on PostgreSQL with the unit's next ``execute(..., carry=True)``: a round trip less.

        A statement on a table with a deferred write first runs the writes deferred so far, and so
        does the end of the unit: nothing sees the database without them. SQLite has no round trips
        to save: it writes now.
        """
        if self.dialect != "postgresql":
            await self.execute(write.statement, write.params(params))
            return
        if self._overlaps(write.statement):
            # Two writes of one table in one statement: PostgreSQL would apply only one to a row.
            await self.flush()
        self._deferred.append((write, write.params(params)))

    @property
    def deferred(self) -> int:
        """How many deferred writes wait for a statement to carry them."""
        return len(self._deferred)

    def _overlaps(self, statement: Statement[Any]) -> bool:
        """Does ``statement`` touch a table with a deferred write (or tables it cannot name)?"""
        if not statement.tables:
            return bool(self._deferred)  # raw SQL: it may touch anything
        return any(not write.statement.tables.isdisjoint(statement.tables) for write, _ in self._deferred)

    async def _flush_for(self, statement: Statement[Any]) -> None:
        if self._overlaps(statement):
            await self.flush()

    async def flush(self) -> None:
        """Run the writes still deferred, one statement each."""
        writes, self._deferred = self._deferred, []
        for write, values in writes:
            compiled = write.statement.compiled(self.dialect)
            await self._execute(compiled.sql, compiled.args(values))

    async def execute_many(self, statement: Statement[Any], rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a write once per row of parameters."""
        if self._deferred:
            await self._flush_for(statement)
        compiled = statement.compiled(self.dialect)
        await self._execute_many(compiled.sql, [compiled.args(row) for row in rows])

    async def all(self, statement: Statement[R], params: Params = None) -> list[R]:
        """Every row of a query (or of a write's ``RETURNING``)."""
        if self._deferred:
            await self._flush_for(statement)
        compiled = statement.compiled(self.dialect)
        return statement.rows(self.dialect, await self._fetch(compiled.sql, compiled.args(params or {})))

    async def together(self, first: Query[A], second: Query[B]) -> tuple[list[A], list[B]]:
        """Every row of two queries; on PostgreSQL in one round trip (``statements.together``).

        Both read one snapshot there. A parameter both name must have one value in both.
        """
        params = dict(first.params)
        for name, value in second.params.items():
            if params.setdefault(name, value) != value:
                raise ValueError(f"{first.statement.name} and {second.statement.name} disagree on {name!r}")
        if self.dialect != "postgresql":  # checked above all the same: a clash shows on either engine
            ones = await self.all(first.statement, first.params)
            return ones, await self.all(second.statement, second.params)
        combined = together([first.statement, second.statement])
        for part in combined.parts:
            if self._deferred:
                await self._flush_for(part)
        compiled = combined.statement.compiled(self.dialect)
        rows = combined.statement.rows(self.dialect, await self._fetch(compiled.sql, compiled.args(params)))
        ones, others = combined.split(rows)
        return ones, others

    async def first(self, statement: Statement[R], params: Params = None) -> R | None:
        """The first row, or None."""
        rows = await self.all(statement, params)
        return rows[0] if rows else None

    async def open_with(self, sql: str) -> None:
        """Run ``sql``, a statement without parameters; as the transaction's first, on PostgreSQL,
        with the transaction's ``BEGIN`` in the same message: one round trip instead of two.

        ``sql`` carries its values as literals, so only a caller that made them itself (numbers)
        may build it.
        """
        if self._deferred:
            await self.flush()
        await self._open_with(sql)

    async def _open_with(self, sql: str) -> None:
        await self._execute(sql, [])

    @abc.abstractmethod
    async def _execute(self, sql: str, args: list[Any]) -> int: ...

    @abc.abstractmethod
    async def _execute_many(self, sql: str, args: list[list[Any]]) -> None: ...

    @abc.abstractmethod
    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]: ...


class SqliteTx(Tx):
    """A transaction on a stdlib ``sqlite3`` connection (the caller began it)."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__()
        self._connection = connection

    async def _execute(self, sql: str, args: list[Any]) -> int:
        with _sqlite_errors(), contextlib.closing(self._connection.execute(sql, args)) as cursor:
            return cursor.rowcount

    async def _execute_many(self, sql: str, args: list[list[Any]]) -> None:
        with _sqlite_errors():
            self._connection.executemany(sql, args).close()

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        with _sqlite_errors(), contextlib.closing(self._connection.execute(sql, args)) as cursor:
            rows: list[Sequence[Any]] = cursor.fetchall()
            return rows


class PgTx(Tx):
    """Statements on an asyncpg connection: a transaction it begins itself (``transaction=True``,
    ``commit``/``rollback`` end it), or each statement on its own (a read-only unit).

    The ``BEGIN`` waits for the unit's first statement, and travels with it where it can
    (``open_with``); a unit that sends nothing costs no round trip at all.
    """

    dialect = "postgresql"

    def __init__(self, connection: asyncpg.Connection, *, transaction: bool = False) -> None:
        super().__init__()
        self._connection = connection
        self._must_begin = transaction
        self._begun = False
        self._lost = False

    async def _begin(self, first: str = "") -> None:
        self._must_begin = False
        self._begun = True  # before it is sent: a BEGIN that failed midway is still rolled back
        with self._errors():
            await self._connection.execute(f"BEGIN; {first}" if first else "BEGIN")

    async def _open_with(self, sql: str) -> None:
        if self._must_begin:
            await self._begin(sql)  # the simple query protocol: both in one message
        else:
            await self._execute(sql, [])

    async def commit(self) -> None:
        """End the transaction: what it wrote is durable when this returns."""
        if self._begun:
            self._begun = False
            with self._errors():
                await self._connection.execute("COMMIT")

    async def rollback(self) -> None:
        """Undo the transaction, if it began; a connection that cannot even roll back is closed,
        so the pool never hands out one left inside a transaction."""
        if not self._begun or self._lost:
            return
        self._begun = False
        try:
            await self._connection.execute("ROLLBACK")
        except PG_FAILURES:
            self._connection.terminate()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except PG_FAILURES as exc:
            error = pg_error(exc)
            # Cut, or silent (a timeout): nothing more can be asked of this connection, not even a
            # ROLLBACK, which on a half-open one would wait a whole timeout again. (The database
            # drops the connection: ``_dropped_when_broken``.)
            if isinstance(error, StoreUnavailable):
                self._lost = True
            raise error from None

    async def _execute(self, sql: str, args: list[Any]) -> int:
        if self._must_begin:
            await self._begin()
        with self._errors():
            status: str = await self._connection.execute(sql, *args)
        # "INSERT 0 3", "UPDATE 2", "DELETE 0": the count is the last word.
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _execute_many(self, sql: str, args: list[list[Any]]) -> None:
        if self._must_begin:
            await self._begin()
        with self._errors():
            await self._connection.executemany(sql, args)

    async def _fetch(self, sql: str, args: list[Any]) -> Sequence[Sequence[Any]]:
        if self._must_begin:
            await self._begin()
        with self._errors():
            rows: list[Sequence[Any]] = await self._connection.fetch(sql, *args)
            return rows


@contextlib.contextmanager
def _sqlite_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise sqlite_error(exc) from None


def run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Drive a unit of work that never suspends (a SQLite one) to its result, without a loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a SQLite unit of work awaited something other than its transaction")


PG_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
"""What asyncpg raises for a failed statement. ``InternalClientError`` is a connection whose protocol
was left mid-operation by a cut (``cannot switch to state ...``): as unusable as a closed one."""


def pg_error(exc: BaseException) -> StoreError:
    """The store's error for an asyncpg one (SQLSTATE only: the message may quote row values)."""
    code = getattr(exc, "sqlstate", None)
    if code == "23505":
        return DuplicateKey(code=code)
    if code in failures.CONTENDED:
        return Contention(code=code)
    if isinstance(exc, TimeoutError):  # asyncpg's command_timeout (before OSError: it is one)
        return StoreUnavailable(code=failures.TIMED_OUT)
    broken = asyncpg.PostgresConnectionError | asyncpg.InterfaceError | asyncpg.InternalClientError | OSError
    if isinstance(exc, broken) or (code or "").startswith(("08", "57P")):
        return StoreUnavailable(code=code or type(exc).__name__)
    return StoreError(f"database error {code or type(exc).__name__}", code=code or type(exc).__name__)


def sqlite_error(exc: sqlite3.Error) -> StoreError:
    """The store's error for a sqlite3 one (its error name only)."""
    name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
    if name in {"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"}:
        return DuplicateKey(code=name)
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return Contention(code=name)
    return StoreError(f"database error {name}", code=name)
