"""PostgreSQL plans the tender path's lookups by their keys once CMC has given its tables statistics.

This machine's PostgreSQL runs with autovacuum off, as a server may: without an ANALYZE a table
looks empty, and the replay lookup by (posSystemId, companyId, transactionId) walked the company's
slice of ``ix_transactions_company_time`` instead of the one entry of ``uq_transactions_pos_tx``.
``cmc.store.statistics`` analyzes such a table once it holds rows; the plans here are PostgreSQL's
generic ones (what a prepared statement of the driver runs after its first executions).
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Connection, text

import pg_databases
from cmc.store import statistics
from cmc.store.database import Database

pytestmark = pytest.mark.skipif(
    not pg_databases.POSTGRES_URL, reason="PostgreSQL only: set CMC_TEST_POSTGRES_URL"
)

SALES = """
INSERT INTO transactions (id, pos_system_id, company_id, pos_transaction_id, location_id, terminal_id,
    transaction_type, is_reversal, amount, occurred_at, received_at, profile_id, loyalty_card,
    request_hash, request, response)
SELECT :prefix || 'tx-' || g, 'pax', 'comp5', :prefix || 'pos-' || g, 'loc5', 'term5', 'Sale', false,
    10, now(), now(), NULL, NULL, 'x', '\\x7b7d'::bytea, '\\x7b7d'::bytea
FROM generate_series(1, :n) AS g
"""
FIND = (
    "SELECT id FROM transactions WHERE pos_system_id = $1::varchar AND company_id = $2::varchar"
    " AND pos_transaction_id = $3::varchar"
)


def plan(conn: Connection) -> str:
    conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
    conn.exec_driver_sql(f"PREPARE find(varchar, varchar, varchar) AS {FIND}")
    try:
        rows = conn.exec_driver_sql("EXPLAIN EXECUTE find('pax', 'comp5', 'bpos-7')").all()
    finally:
        conn.exec_driver_sql("DEALLOCATE find")
    return "\n".join(str(row[0]) for row in rows)


def analyzed(conn: Connection) -> set[str]:
    found = conn.execute(
        text(
            "SELECT relname FROM pg_stat_user_tables"
            " WHERE last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
        )
    ).scalars()
    return {str(name) for name in found}


async def test_a_table_without_statistics_gets_them_and_its_key_is_used() -> None:
    url = pg_databases.create()
    db = Database.open(url)
    try:
        await db.write(lambda conn: conn.execute(text(SALES), {"n": 50, "prefix": "a"}))
        await asyncio.sleep(1.2)  # the cumulative statistics (row counts) are flushed about every second
        assert await db.read(statistics.unanalyzed) == []  # too few rows to bother
        assert not await statistics.round_once(db)  # not done: nothing has statistics yet
        await db.write(lambda conn: conn.execute(text(SALES), {"n": 500, "prefix": "b"}))
        # A backend hands its row counts to the cumulative statistics at the end of a transaction
        # a second after its last flush (or after ten idle seconds): ask until they are there.
        deadline = asyncio.get_running_loop().time() + 15
        while await db.read(statistics.unanalyzed) != ["transactions"]:
            assert asyncio.get_running_loop().time() < deadline, "the row counts never showed"
            await asyncio.sleep(0.3)
        await statistics.round_once(db)
        assert "transactions" in await db.read(analyzed)
        assert await db.read(statistics.unanalyzed) == []
        assert "uq_transactions_pos_tx" in await db.write(plan)
    finally:
        await db.close()
        pg_databases.drop(url)


async def test_the_loop_ends_once_every_table_has_statistics() -> None:
    url = pg_databases.create()
    db = Database.open(url)
    try:
        for table in statistics.TABLES:
            await db.write(statistics.analyze, table)
        assert await statistics.round_once(db)
        loop = statistics.Statistics(db)
        await loop.start()
        task = loop._task
        assert task is not None
        await asyncio.wait_for(task, timeout=5)  # it ends by itself
        await loop.stop()
    finally:
        await db.close()
        pg_databases.drop(url)


def test_only_our_tables_can_be_analyzed() -> None:
    with pytest.raises(ValueError, match="not one of"):
        statistics.analyze(None, 'transactions"; DROP TABLE meta; --')  # type: ignore[arg-type]
