"""PostgreSQL's planner statistics of CMC's busiest tables, when autovacuum has not made them.

PostgreSQL plans each statement by what it knows of the table: its size and its columns'
statistics, which autovacuum's ANALYZE gathers. A table never analyzed looks empty, and then every
index whose first columns match a condition looks as good as any other: a sale's replay lookup read
the whole company's slice of ``ix_transactions_company_time`` instead of the one key of
``uq_transactions_pos_tx``, and the tender path slowed with every sale stored (seen on a server with
autovacuum off: 360 tenders/s falling to 240 in half a minute, 650 once analyzed).

So each ``cmc serve`` process on PostgreSQL checks, every ``EVERY`` until it is done, whether one of
``TABLES`` holds ``MINIMUM`` rows and was never analyzed (by anyone: autovacuum, an operator, another
process), and analyzes it. Once each has statistics the loop ends: from then on the shape of the
data, which is what picks an index, is known, and keeping it fresh is autovacuum's work. On SQLite
there is nothing to do: CMC's statements there are written so that its planner's own rules pick
the index (``tests/test_query_plans.py``).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog
from sqlalchemy import Connection, bindparam, text

from cmc import background
from cmc.store.database import Database

log = structlog.get_logger(__name__)
TABLES = ("transactions", "profiles", "profile_identifiers", "rule_firings", "short_links", "messages")
MINIMUM = 100
EVERY = timedelta(seconds=1)

_UNANALYZED = text(
    "SELECT relname FROM pg_stat_user_tables WHERE relname IN :names AND n_live_tup >= :minimum"
    " AND last_analyze IS NULL AND last_autoanalyze IS NULL"
).bindparams(bindparam("names", expanding=True))
_NEVER = text(
    "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN :names"
    " AND last_analyze IS NULL AND last_autoanalyze IS NULL"
).bindparams(bindparam("names", expanding=True))


def unanalyzed(conn: Connection) -> list[str]:
    """The tables of ``TABLES`` that hold enough rows and have no statistics yet."""
    found = conn.execute(_UNANALYZED, {"names": list(TABLES), "minimum": MINIMUM}).scalars()
    return [str(name) for name in found]


def never_analyzed(conn: Connection) -> int:
    """How many of ``TABLES`` have no statistics yet, however few rows they hold."""
    return int(conn.execute(_NEVER, {"names": list(TABLES)}).scalar_one())


def analyze(conn: Connection, table: str) -> None:
    if table not in TABLES:  # a name of ours, never a caller's: it is written into the statement
        raise ValueError(f"not one of CMC's analyzed tables: {table!r}")
    conn.execute(text(f'ANALYZE "{table}"'))


async def round_once(db: Database) -> bool:
    """Analyze what needs it; True when every table has statistics (the loop's end)."""
    for table in await db.read(unanalyzed):
        await db.write(analyze, table)
        log.info("table_analyzed", table=table)
    return await db.read(never_analyzed) == 0


class Statistics(background.Loop):
    """The loop of one process (PostgreSQL only): ``round_once`` every ``EVERY`` until it is done."""

    name = "cmc-statistics"

    def __init__(self, db: Database, *, every: timedelta = EVERY) -> None:
        super().__init__()
        self._db, self._every = db, every.total_seconds()

    async def run(self) -> None:
        while True:
            try:
                if await round_once(self._db):
                    return
            except Exception:  # the database away: the next round tries again
                log.warning("statistics_failed", exc_info=True)
            await asyncio.sleep(self._every)
