"""What a database failure means (``cmc.store.failures``), from failures a real PostgreSQL makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from sqlalchemy import Connection, bindparam, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import pg_databases
from blackhole import blackhole_for
from cmc.errors import StoreUnavailable
from cmc.store import database, failures
from cmc.store.database import Database, normalize_url
from cmc.store.driver import Tx
from cmc.store.statements import Statement

pytestmark = pytest.mark.usefixtures("garbage_collected")


@pytest.fixture
async def engine() -> AsyncIterator[AsyncEngine]:
    if not pg_databases.POSTGRES_URL:
        pytest.skip("PostgreSQL only: set CMC_TEST_POSTGRES_URL to run it")
    url = pg_databases.create()
    engine = create_async_engine(normalize_url(url))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE pair (id int PRIMARY KEY)"))
        await conn.execute(text("INSERT INTO pair VALUES (1), (2)"))
    try:
        yield engine
    finally:
        await engine.dispose()
        pg_databases.drop(url)


async def test_a_deadlock_on_the_core_path_is_transient_not_a_bug(engine: AsyncEngine) -> None:
    """Two transactions lock two rows in opposite orders: PostgreSQL ends one of them (40P01)."""
    both_hold_one = asyncio.Barrier(2)

    async def lock(first: int, second: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT id FROM pair WHERE id = :id FOR UPDATE"), {"id": first})
            await both_hold_one.wait()
            await conn.execute(text("SELECT id FROM pair WHERE id = :id FOR UPDATE"), {"id": second})

    ends = await asyncio.wait_for(asyncio.gather(lock(1, 2), lock(2, 1), return_exceptions=True), 30)
    errors = [end for end in ends if isinstance(end, BaseException)]
    assert len(errors) == 1, ends
    assert isinstance(errors[0], DBAPIError)
    assert failures.code(errors[0]) == "40P01"
    assert failures.is_transient(errors[0])


async def test_a_bug_is_not_transient(engine: AsyncEngine) -> None:
    with pytest.raises(DBAPIError) as raised:
        async with engine.begin() as conn:
            await conn.execute(text("SELECT no_such_column FROM pair"))
    assert failures.code(raised.value) == "42703"
    assert not failures.is_transient(raised.value)
    assert failures.is_database_error(raised.value)


def test_a_lost_connection_is_transient() -> None:
    assert failures.is_transient(ConnectionResetError())
    assert not failures.is_transient(ValueError())


# --- a connection that falls silent (half-open TCP) on the hot path ------------------------------


async def test_a_sale_on_a_silent_connection_fails_fast_and_frees_its_locks(
    database_url: str,
    backend: str,
    monkeypatch: pytest.MonkeyPatch,
    made_statement: Callable[..., Statement[Any]],
) -> None:
    """A unit whose connection goes half-open mid-transaction is 503 within one statement timeout,
    and the server ends the orphaned transaction, so the customer's locks are free for the retry.

    Without the two timeouts the unit would wait for ever (holding a pool connection), and the
    server would keep its transaction, and every lock it took, until its own TCP keepalive (two
    hours by default): every later sale of that customer would wait behind it.
    """
    if backend != "postgresql":
        pytest.skip("PostgreSQL's driver pool; SQLite has no network")
    monkeypatch.setattr(database, "STATEMENT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_SECONDS", 1)
    locked = made_statement(
        select(func.pg_backend_pid(), func.pg_advisory_xact_lock(bindparam("key")).is_(None)),
        name="test[locked]",
    )
    try_lock = made_statement(select(func.pg_try_advisory_xact_lock(bindparam("key"))), name="test[try lock]")
    loop = asyncio.get_running_loop()
    async with blackhole_for(database_url) as proxy:
        cut = Database.open(proxy.url_for(database_url))
        direct = Database.open(database_url)
        try:

            async def sale(tx: Tx) -> None:
                await tx.first(locked, {"key": 7})  # BEGIN, then the customer's lock
                proxy.silence()
                await tx.first(locked, {"key": 8})  # never answered

            started = loop.time()
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(cut.transact(sale), 10)  # a hang fails, not blocks the run
            assert loop.time() - started < 3  # one statement timeout, not one per retry

            async def retry(tx: Tx) -> bool:
                row = await tx.first(try_lock, {"key": 7})
                return bool(row and row[0])

            deadline = loop.time() + 10
            while not await direct.transact(retry):  # the orphan holds it until the server ends it
                assert loop.time() < deadline, "the orphaned transaction kept its lock"
                await asyncio.sleep(0.1)
        finally:
            await direct.close()
            await asyncio.wait_for(cut.close(), 5)  # its silent connection was dropped, not waited on


async def test_a_console_write_on_a_silent_connection_fails_as_transient(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every other path (SQLAlchemy's engine: console, merchant API, dispatcher) is bounded too, and
    what it raises is transient (503 with Retry-After), not a bug."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL's engine; SQLite has no network")
    monkeypatch.setattr(database, "ENGINE_STATEMENT_TIMEOUT_SECONDS", 0.5)
    loop = asyncio.get_running_loop()
    async with blackhole_for(database_url) as proxy:
        cut = Database.open(proxy.url_for(database_url))
        try:

            def publish(conn: Connection) -> None:
                conn.execute(text("SELECT 1"))
                proxy.silence()
                conn.execute(text("SELECT 2"))

            started = loop.time()
            with pytest.raises(Exception) as raised:
                await asyncio.wait_for(cut.write(publish), 10)
            assert loop.time() - started < 5  # the statement's timeout and the rollback's
            assert failures.is_transient(raised.value), raised.value
        finally:
            await asyncio.wait_for(cut.close(), 5)
