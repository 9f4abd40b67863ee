"""The database handle: run a unit of work in one transaction, on SQLite or PostgreSQL.

Two kinds of unit, each run in its own database transaction:

- **Driver units** (the hot paths: a tender, a scan): ``async def unit(tx: Tx, ...)`` running
  ``Statement``s on the driver connection (``cmc.store.driver``). ``transact`` runs one read-write,
  ``query`` one read-only. On PostgreSQL they use their own asyncpg pool, and ``transact`` retries a
  deadlock, a serialization failure or a lost connection a bounded number of times with jitter
  before it gives up with ``Contention`` / ``StoreUnavailable`` (which the API answers with 503).
- **Core functions** (everything else: the registry, the outbox dispatcher, retention):
  ``fn(conn, *args)`` over a SQLAlchemy ``Connection``, run by ``write``, ``read`` or ``run_sync``.

Engines:

- SQLite (the embedded default) uses the stdlib driver. Every write transaction starts with
  ``BEGIN IMMEDIATE`` (SQLite allows one writer; taking the lock up front avoids "database is
  locked" upgrades), WAL keeps readers from blocking it, and ``busy_timeout`` makes processes
  sharing the file queue instead of failing. A write runs first on the event loop's own thread
  with a zero busy timeout: a tender's SQLite work is a fraction of a millisecond, less than
  handing it to a thread and back. Only when another process holds the write lock does the write
  go to the writer thread, which waits for the lock there without stalling the loop. Reads run in
  a few reader threads.
- SQLite group commit: the driver units (``transact``) that run in one turn of the event loop share
  one write transaction, each in a savepoint of its own, and that transaction commits once, at the
  end of the turn; each caller gets its result only after that commit. A tender's commit writes
  every b-tree page it touched to the WAL, and under load the units of one turn touch the same
  pages (the right edges of the sales' indexes, the database header): committing once per turn
  writes each of them once. A unit that fails is rolled back to its savepoint alone; a commit that
  fails fails every unit of the turn (none of them is stored). ``write`` commits an open turn first.
- PostgreSQL: driver units on an asyncpg pool; Core functions through SQLAlchemy's async engine
  (``run_sync``). Both pools check a connection before handing it out, so a backend that was
  terminated while idle is replaced instead of failing the request.

SQLAlchemy never logs statement parameters (``hide_parameters``): they hold customers' contacts.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL, ExceptionContext
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from cmc.errors import ConfigError, Contention, StoreUnavailable
from cmc.store import checkpoints, failures
from cmc.store.driver import PG_FAILURES, PgTx, SqliteTx, Tx, pg_error, run_to_completion, sqlite_error
from cmc.store.types import json_text

P = ParamSpec("P")
T = TypeVar("T")

READ_THREADS = 4
PG_POOL_SIZE = 10
RETRY_ATTEMPTS = 6
RETRY_BASE_SECONDS = 0.02
RETRY_CAP_SECONDS = 0.5
"""Contention and lost connections: up to 6 tries, 20 ms doubling with full jitter, capped at 0.5 s
(about 1.3 s in all at worst), then the caller gets the error."""
CONNECT_TIMEOUT_SECONDS = 5.0
STATEMENT_TIMEOUT_SECONDS = 5.0
"""How long each round trip of a hot-path unit (a tender's, a scan's) may wait for its answer,
lock waits included, before the unit fails as unavailable (503, not retried here: the POS's client
retries).
A connection gone half-open (a network cut: no FIN, no RST) never answers, and without a bound
would hold the request and its pool connection for ever. Under cmc_client's 10 s request timeout,
so the POS hears CMC's 503 when a connection falls silent (a server that is slow but alive can take
longer over a tender's four round trips, and the client's own timeout then speaks first)."""
ENGINE_STATEMENT_TIMEOUT_SECONDS = 20.0
"""The same bound for everything else (console, merchant API, analytics, dispatcher, roll-up):
none of their statements takes more than a second or two at a million sales. It also bounds the
outbox's recording of a pass: its tries (``dispatch.RECORD_TRIES``) must end inside the lease,
or another dispatcher would send the message again (a test holds the two together)."""
IDLE_IN_TRANSACTION_SECONDS = 4
"""The server ends a transaction of ours that has waited this long for its next statement, and so
frees its locks. No unit does other I/O inside a transaction, so only a client that is gone (or
cut off) idles that long; without it, a cut mid-sale would leave the customer's locks taken until
the server's own TCP keepalive noticed (two hours by default), and every later sale of that
customer would wait behind them. Below the statement timeout: by the time the POS hears the
503, the cut-off sale's locks are free for its retry."""
CLIENT_CHECK_MS = 1000
CLOSE_TIMEOUT_SECONDS = 0.5
"""Closing a connection (at shutdown, or a pooled one SQLAlchemy retires): one gone silent is
dropped after this rather than waited on for a statement timeout."""
SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_CACHE_KIB = 65_536


def normalize_url(url: str) -> URL:
    """Map a user-facing URL to the driver CMC uses: sqlite (stdlib) or postgresql+asyncpg."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"CMC_DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ConfigError(f"CMC_DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)")


def libpq_dsn(url: str) -> str:
    """The plain ``postgresql://`` form of a PostgreSQL URL, for a bare asyncpg connection."""
    return normalize_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


Unit = Callable[Concatenate[Tx, P], Awaitable[T]]
"""A driver unit of work: ``async def unit(tx, *args, **kwargs)``."""


class Database(abc.ABC):
    """Runs units of work in a database transaction; ``open()`` picks the engine from the URL."""

    dialect: str

    @staticmethod
    def open(url: str, *, sqlite_synchronous: str = "NORMAL", pool_size: int = PG_POOL_SIZE) -> Database:
        """Open the database at ``url`` (no connection is made until first use).

        ``pool_size`` bounds the PostgreSQL connections of the driver path (the Core path keeps up to
        ten more, and a LISTEN connection of its own).
        """
        parsed = normalize_url(url)
        if parsed.get_backend_name() == "sqlite":
            return SqliteDatabase(parsed, synchronous=sqlite_synchronous)
        return PostgresDatabase(parsed, pool_size=pool_size)

    @abc.abstractmethod
    async def transact(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a driver unit in a read-write transaction; commit on return."""

    @abc.abstractmethod
    async def query(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a driver unit that only reads."""

    @abc.abstractmethod
    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a read-write transaction; commit on return."""

    @abc.abstractmethod
    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a read-only transaction."""

    @abc.abstractmethod
    def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in a write transaction from synchronous code (the CLI)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection and thread."""


class SqliteDatabase(Database):
    """Embedded SQLite: one writer thread, a few reader threads, WAL."""

    dialect = "sqlite"

    def __init__(self, url: URL, *, synchronous: str) -> None:
        if url.database and url.database != ":memory:":
            try:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"CMC_DATABASE_URL: cannot create {url.database!r}: {exc.strerror}"
                ) from None
        elif url.database == ":memory:" or not url.database:
            raise ConfigError("CMC_DATABASE_URL: use a SQLite file, not an in-memory database")
        self.url = url
        self._synchronous = synchronous.upper()
        self._writer = self._engine(immediate=True, pool_size=1)
        self._reader = self._engine(immediate=False, pool_size=READ_THREADS)
        self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="cmc-sqlite-writer")
        self._read_threads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="cmc-sqlite-reader")
        self._write_conn: Connection | None = None
        self._inline = self._engine(immediate=True, pool_size=1, busy_timeout_ms=0)
        self._inline_conn: Connection | None = None
        self._turn: _Turn | None = None
        self._checkpointer: checkpoints.Checkpointer | None = None
        self._closed = False

    def _engine(
        self, *, immediate: bool, pool_size: int, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS
    ) -> Engine:
        engine = create_engine(
            self.url,
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=0,
            hide_parameters=True,
            json_serializer=json_text,
        )
        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # The driver's own transaction handling would issue a deferred BEGIN; we issue ours.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute(f"PRAGMA synchronous={self._synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            if immediate:
                # The sales' indexes are probed at random (a customer's identifiers, a transaction
                # id): keep more of them in memory than SQLite's default 2 MB.
                cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
                # A savepoint keeps the pages its unit changes in a statement journal: in memory, not
                # a temporary file (group commit runs every unit of a turn but the first in one).
                # Readers keep temporary files: an analytics sort can be large.
                cursor.execute("PRAGMA temp_store=MEMORY")
            # The checkpoint thread keeps the WAL short; a commit checkpoints only if it stalled.
            cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoints.BACKSTOP_PAGES}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            raw = conn.connection.dbapi_connection
            if not raw.in_transaction:  # type: ignore[union-attr]
                raw.execute(begin)  # type: ignore[union-attr]

        return engine

    def _run(self, engine: Engine, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        with engine.begin() as conn:
            return fn(conn, *args, **kwargs)

    def _run_write(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        # Only the writer thread runs this, so it keeps one connection instead of a pool checkout
        # per transaction.
        if self._write_conn is None or self._write_conn.closed:
            self._write_conn = self._writer.connect()
        try:
            return _transaction(self._write_conn, fn, args, kwargs)
        except _Busy as busy:
            # Here the lock stayed taken for the whole busy timeout: report SQLite's own error.
            raise busy.__cause__ from None  # type: ignore[misc]

    def _run_inline(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """On the loop's thread; raises ``_Busy`` at once if another writer holds the lock."""
        return _transaction(self._inline_connection(), fn, args, kwargs)

    def _inline_connection(self) -> Connection:
        if self._inline_conn is None or self._inline_conn.closed:
            self._inline_conn = self._inline.connect()
        # Started by the first write on the loop (a server's), not for a CLI command's few writes.
        if self._checkpointer is None:
            assert self.url.database
            self._checkpointer = checkpoints.Checkpointer(self.url.database)
            self._checkpointer.start()
        return self._inline_conn

    async def transact(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        def fn(conn: Connection) -> T:
            return run_to_completion(unit(SqliteTx(_raw(conn)), *args, **kwargs))  # type: ignore[arg-type]

        if self._closed:
            raise StoreUnavailable(code="closed")
        turn = self._turn
        if turn is None or turn.size >= MAX_UNITS_PER_TURN:
            if turn is not None:
                self._commit(turn)
            try:
                turn = self._begin_turn()
            except _Busy:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._write_thread, self._run_write, fn, (), {})
        try:
            result = turn.run(fn)
        finally:
            if turn.over:
                self._end_turn(turn)
        # The commit sets the future at the end of this turn; shielded so that a caller cancelled
        # while it waits (its sale is committed or failed with the others all the same) does not
        # cancel the future the other units of the turn wait on.
        await asyncio.shield(turn.committed)
        return result

    def _begin_turn(self) -> _Turn:
        """Open the loop turn's write transaction (``_Busy`` when another process holds the lock)."""
        loop = asyncio.get_running_loop()
        turn = _Turn(self._inline_connection(), loop.create_future())
        self._turn = turn
        loop.call_soon(self._commit, turn)
        return turn

    def _commit(self, turn: _Turn) -> None:
        """Commit ``turn`` unless it is already over (committed early by a ``write``, or failed)."""
        if self._turn is turn:
            turn.commit()
            self._end_turn(turn)

    def _end_turn(self, turn: _Turn) -> None:
        if self._turn is turn:
            self._turn = None
        if turn.broken and self._inline_conn is not None:
            self._inline_conn.invalidate()
            self._inline_conn = None

    def _commit_open_turn(self) -> None:
        if self._turn is not None:
            self._commit(self._turn)

    async def query(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        def fn(conn: Connection) -> T:
            return run_to_completion(unit(SqliteTx(_raw(conn)), *args, **kwargs))  # type: ignore[arg-type]

        return await self.read(fn)

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if self._closed:
            raise StoreUnavailable(code="closed")
        # A Core function runs in a transaction of its own on the same connection.
        self._commit_open_turn()
        try:
            return self._run_inline(fn, args, kwargs)
        except _Busy:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._write_thread, self._run_write, fn, args, kwargs)

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_threads, self._run, self._reader, fn, args, kwargs)

    def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return self._write_thread.submit(self._run_write, fn, args, kwargs).result()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._commit_open_turn()
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._inline_conn is not None:
            self._inline_conn.close()
        self._inline.dispose()
        if self._write_conn is not None:
            self._write_thread.submit(self._write_conn.close).result()
        self._write_thread.shutdown(wait=True)
        self._read_threads.shutdown(wait=True)
        self._writer.dispose()
        self._reader.dispose()


def _raw(conn: Connection) -> sqlite3.Connection:
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


class _Busy(Exception):
    """Another process holds SQLite's write lock (raised only where the busy timeout is zero)."""


MAX_UNITS_PER_TURN = 64
"""A turn with this many units commits before the next one starts: bounds the work one commit can
fail, and how long the first unit of a turn waits for its answer."""


class _Turn:
    """The driver units of one event-loop turn, in one SQLite write transaction (group commit).

    Every unit after the first runs in a savepoint, so that its failure undoes its own writes only.
    The first needs none: when it fails, the transaction (holding nothing else) is rolled back and
    the turn is ``over``; the next unit begins another.
    """

    committed: asyncio.Future[None]
    """Done when the turn is over: committed (None) or failed (the error every unit gets)."""
    size: int
    over: bool
    broken: bool
    """Its rollback failed: the connection is discarded, a fresh one takes the next turn."""
    _conn: Connection
    _raw: sqlite3.Connection

    def __init__(self, conn: Connection, committed: asyncio.Future[None]) -> None:
        self._conn = conn
        self._raw = _begin_immediate(conn)
        self.committed = committed
        self.size = 0
        self.over = False
        self.broken = False

    def run(self, fn: Callable[[Connection], T]) -> T:
        """Run one unit in this turn's transaction; raises what the unit raised."""
        assert not self.over, "a unit joined a turn that is over"
        first = self.size == 0
        self.size += 1
        if not first:
            self._savepoint("SAVEPOINT unit")
        try:
            result = fn(self._conn)
        except BaseException:
            self._undo(first)
            raise
        if not first:
            self._savepoint("RELEASE unit")
        return result

    def _savepoint(self, command: str) -> None:
        """A savepoint command; if SQLite refuses it, nothing of the turn can be trusted to commit."""
        try:
            self._raw.execute(command)
        except sqlite3.Error as exc:
            error = sqlite_error(exc)
            self._abort(error)
            raise error from None

    def _undo(self, first: bool) -> None:
        if self._raw.in_transaction and not first:
            try:
                self._raw.execute("ROLLBACK TO unit")
                self._raw.execute("RELEASE unit")
                return
            except sqlite3.Error:
                pass  # the unit's writes could not be undone alone: the whole turn goes
        # The first unit failed, or SQLite itself rolled the transaction back (a full disk, an I/O
        # error), taking the earlier units' writes with it: they fail too.
        self._abort(None if first else StoreUnavailable(code="rolled back with another unit of its turn"))

    def commit(self) -> None:
        """Commit the turn's transaction and wake every unit waiting for it."""
        if self.over:
            return
        try:
            self._raw.commit()
        except sqlite3.Error as exc:
            self._abort(sqlite_error(exc))
            return
        self._end(None)

    def _abort(self, error: BaseException | None) -> None:
        """Roll the whole transaction back; ``error`` is what the turn's other units get."""
        try:
            if self._raw.in_transaction:
                self._raw.rollback()
        except sqlite3.Error:
            # Still inside a transaction: the connection must not begin the next turn.
            self.broken = True
        self._end(error)

    def _end(self, error: BaseException | None) -> None:
        self.over = True
        if error is None:
            self.committed.set_result(None)
        else:
            self.committed.set_exception(error)
            # Marked as retrieved: a turn whose callers were all cancelled is not an error to log.
            self.committed.exception()


def _begin_immediate(conn: Connection) -> sqlite3.Connection:
    """Begin a write transaction on ``conn``'s driver connection (``_Busy``: another writer has it)."""
    raw = _raw(conn)
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise _Busy() from exc
        raise
    return raw


def _transaction(conn: Connection, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    """Run ``fn`` in one SQLite write transaction opened on the driver's connection.

    The tender path's statements run on the driver directly (``cmc.store.driver``), and
    SQLAlchemy's own begin/commit machinery costs more than the SQLite work of a small statement;
    a Core statement inside ``fn`` joins the same transaction.
    """
    raw = _begin_immediate(conn)
    try:
        result = fn(conn, *args, **kwargs)
    except BaseException:
        try:
            conn.rollback() if conn.in_transaction() else raw.rollback()
        finally:
            if conn.invalidated:
                conn.close()
        raise
    conn.commit() if conn.in_transaction() else raw.commit()
    return result


class PostgresDatabase(Database):
    """PostgreSQL through asyncpg; stateless, so any number of processes may share it."""

    dialect = "postgresql"

    def __init__(self, url: URL, *, pool_size: int = PG_POOL_SIZE) -> None:
        self.url = url
        self._pool_size = pool_size
        self._engine: AsyncEngine = create_async_engine(
            url,
            pool_size=5,
            max_overflow=5,
            # No pre-ping: on a silent connection it waits a whole statement timeout and then hands
            # the dead connection back, so after a network flap each pooled connection would fail
            # a request of its own. Without it the first statement that finds a dead connection
            # fails (503), and that marks the whole pool stale (``_timed_out_is_a_disconnect``; a
            # closed connection, after a server restart, is a disconnect to SQLAlchemy already).
            pool_pre_ping=False,
            hide_parameters=True,
            json_serializer=json_text,
            connect_args={
                "timeout": CONNECT_TIMEOUT_SECONDS,
                "command_timeout": ENGINE_STATEMENT_TIMEOUT_SECONDS,
                "server_settings": _server_settings(),
            },
        )
        event.listen(self._engine.sync_engine, "handle_error", _timed_out_is_a_disconnect)
        event.listen(self._engine.sync_engine.pool, "close", _closing)
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        self._rng = random.Random()

    async def transact(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                pool = await self._driver_pool()
                async with pool.acquire() as connection, _dropped_when_broken(connection):
                    tx = PgTx(connection, transaction=True)
                    try:
                        result = await unit(tx, *args, **kwargs)
                        await tx.flush()
                        await tx.commit()
                    except BaseException:
                        await tx.rollback()
                        raise
                    return result
            except (Contention, StoreUnavailable) as exc:
                if exc.code == failures.TIMED_OUT:
                    await self._expire_idle()
                    raise
                if attempt == RETRY_ATTEMPTS:
                    raise
            except PG_FAILURES as exc:  # opening a connection failed: refused, too many, starting up
                if attempt == RETRY_ATTEMPTS or isinstance(exc, TimeoutError):  # or no answer at all
                    raise _unavailable(exc) from None
            await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("the loop returns or raises")

    async def query(self, unit: Unit[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        # Each statement of a read-only unit sees its own snapshot: no BEGIN/COMMIT round trips.
        for attempt in range(1, RETRY_ATTEMPTS + 1):
            try:
                pool = await self._driver_pool()
                async with pool.acquire() as connection, _dropped_when_broken(connection):
                    tx = PgTx(connection)
                    result = await unit(tx, *args, **kwargs)
                    if tx.deferred:
                        raise RuntimeError("a read-only unit deferred a write")
                    return result
            except StoreUnavailable as exc:
                if exc.code == failures.TIMED_OUT:
                    await self._expire_idle()
                    raise
                if attempt == RETRY_ATTEMPTS:
                    raise
            except PG_FAILURES as exc:
                if attempt == RETRY_ATTEMPTS or isinstance(exc, TimeoutError):
                    raise _unavailable(exc) from None
            await asyncio.sleep(self._backoff(attempt))
        raise AssertionError("the loop returns or raises")

    async def _expire_idle(self) -> None:
        """After a statement got no answer, replace the pool's other connections as they are next
        handed out: opened over the same route, they are most likely as silent, and each would cost
        a tender a whole timeout to find out. (The old ones are closed in the background.)"""
        if self._pool is not None:
            await self._pool.expire_connections()

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0, min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempt - 1)))

    async def _driver_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        libpq_dsn(self.url.render_as_string(hide_password=False)),
                        min_size=1,
                        max_size=self._pool_size,
                        init=_setup_connection,
                        timeout=CONNECT_TIMEOUT_SECONDS,
                        command_timeout=STATEMENT_TIMEOUT_SECONDS,
                        server_settings=_server_settings(),
                        # Units leave nothing behind (their transaction ended, advisory locks are
                        # transaction-scoped): skip the reset round trip on every release. (asyncpg
                        # still rolls back a transaction a cancelled unit left open, and warns.)
                        reset=_no_reset,
                    )
        return self._pool

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        async def once() -> T:
            # The CLI's (migrations too): bounded connecting, no statement timeout (an index build
            # on a large table may take minutes).
            engine = create_async_engine(
                self.url,
                poolclass=NullPool,
                hide_parameters=True,
                json_serializer=json_text,
                connect_args={"timeout": CONNECT_TIMEOUT_SECONDS, "server_settings": _server_settings()},
            )
            try:
                async with engine.begin() as conn:
                    return await conn.run_sync(fn, *args, **kwargs)
            finally:
                await engine.dispose()

        return asyncio.run(once())

    async def close(self) -> None:
        # Bounded: a graceful close waits for each connection's answer, which a silent one never
        # sends, and an orchestrator's grace period is shorter than the statement timeouts.
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                try:
                    await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_SECONDS)
                except (TimeoutError, *PG_FAILURES):
                    pool.terminate()
        finally:
            # Not cancelled from outside: SQLAlchemy closes inside greenlets, which are better not
            # abandoned midway. Each connection's close is bounded instead (``_closing``).
            await self._engine.dispose()


def _timed_out_is_a_disconnect(context: ExceptionContext) -> None:
    """A connection whose statement timed out is lost (half-open, most likely), and so are its
    pool's idle siblings, opened over the same route.

    Marked so, the connection is dropped without a ROLLBACK (which would wait a whole timeout
    again), and the pool replaces every connection older than now as it is next checked out."""
    if isinstance(context.original_exception, TimeoutError):
        # SQLAlchemy takes a timeout for a cancellation: it drops that connection, but not the rest.
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = True


def _closing(dbapi_connection: Any, _record: Any) -> None:
    """Close a pooled connection within ``CLOSE_TIMEOUT_SECONDS`` before SQLAlchemy closes it: a
    graceful close waits for the server's answer, for a whole statement timeout on a silent
    connection (asyncpg then drops it, and SQLAlchemy's own close finds it closed)."""
    with contextlib.suppress(Exception):
        dbapi_connection.run_async(lambda conn: conn.close(timeout=CLOSE_TIMEOUT_SECONDS))


def _server_settings() -> dict[str, str]:
    """What CMC's connections ask of the server (PostgreSQL 14 or later).

    ``client_connection_check_interval``: a statement still waiting (on a lock, say) when CMC gave
    up on it and dropped its connection is ended by the server within a second, not left queued
    with the locks it already took; asyncpg's own cancel request dies with the connection."""
    # A function, not a constant: read when a pool is made, so a test can shorten the timeout.
    return {
        "idle_in_transaction_session_timeout": str(round(IDLE_IN_TRANSACTION_SECONDS * 1000)),
        "client_connection_check_interval": str(CLIENT_CHECK_MS),
    }


async def _setup_connection(connection: asyncpg.Connection) -> None:
    """Decode ``json`` columns as SQLAlchemy's asyncpg dialect does, so both paths see the same values."""
    await connection.set_type_codec(
        "json",
        encoder=str.encode,
        decoder=lambda raw: json.loads(raw.decode()),
        schema="pg_catalog",
        format="binary",
    )


def _unavailable(exc: BaseException) -> StoreUnavailable:
    error = pg_error(exc)
    return error if isinstance(error, StoreUnavailable) else StoreUnavailable(code=error.code)


async def _no_reset(connection: asyncpg.Connection) -> None:
    return None


@contextlib.asynccontextmanager
async def _dropped_when_broken(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """Close a connection that failed as unreachable, so the pool opens a fresh one for the retry.

    The pool skips its reset on release (``_no_reset``), so nothing else would notice that a cut
    left the connection's protocol mid-operation; the next unit handed it would fail too.
    """
    try:
        yield
    except StoreUnavailable:
        # A connection the server closed was already handed back by asyncpg, whose proxy then
        # refuses even ``terminate``: that must not hide the error it is here for.
        with contextlib.suppress(asyncpg.InterfaceError):
            connection.terminate()
        raise


def ping(conn: Connection) -> bool:
    """The store answers a trivial query."""
    return conn.execute(text("SELECT 1")).scalar() == 1


def check_reachable(db: Database) -> None:
    """Fail with one clear line when the database cannot be opened (for the CLI, before real work)."""
    try:
        db.run_sync(ping)
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise ConfigError(f"CMC_DATABASE_URL: cannot open the database: {reason}") from None
