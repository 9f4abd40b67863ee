"""Two processes that start at once on a new PostgreSQL database both make the service's keys: one wins.

Found when the fault tests started their ``cmc serve`` processes together: the slower one crashed
at start-up on ``pk_meta``. Here two real connections race inside their transactions.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

import pg_databases
from cmc.store import meta


@pytest.mark.skipif(not pg_databases.POSTGRES_URL, reason="PostgreSQL only: set CMC_TEST_POSTGRES_URL")
async def test_two_transactions_making_one_key_at_once_agree_on_the_first() -> None:
    url = pg_databases.create()
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            await second.begin()
            assert await first.run_sync(meta.get_or_create, "race", "one") == "one"
            # The second insert waits for the first transaction's key, then finds it taken.
            loser = asyncio.create_task(second.run_sync(meta.get_or_create, "race", "two"))
            await asyncio.sleep(0.2)
            assert not loser.done()
            await first.commit()
            assert await loser == "one"
            await second.run_sync(meta.put, "other", "x")  # the transaction is still usable
            await second.commit()
        async with engine.connect() as check:
            assert await check.run_sync(meta.get, "race") == "one"
    finally:
        await engine.dispose()
        pg_databases.drop(url)
