"""What a database failure means (``cmc.store.failures``), from failures a real PostgreSQL makes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import pg_databases
from cmc.store import failures
from cmc.store.database import normalize_url


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
