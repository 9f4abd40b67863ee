"""The statements of the tender path, and the lift's cohort, read the index they were written for.

SQLite chooses an index by its own estimates (CMC never runs ANALYZE), and a new index can win a
query it was not made for: the analytics index on ``rule_firings`` took the per-customer limit of
the tender path, which then counted every firing of the company since the limit's start on every
sale. These plans are SQLite's (``EXPLAIN QUERY PLAN`` on the migrated schema); PostgreSQL plans by
the statistics of the data it holds, so an empty test database says nothing about them.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import ClauseElement, select
from sqlalchemy.dialects import sqlite

import cmc
from cmc import firings, profiles
from cmc.store import migrate, statements
from cmc.store.database import Database

for module in pkgutil.walk_packages(cmc.__path__, "cmc."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path = Path(tmp_path_factory.mktemp("plans")) / "cmc.db"
    db = Database.open(f"sqlite:///{path}")
    try:
        migrate.upgrade(db)
    finally:
        asyncio.run(db.close())
    return sqlite3.connect(path)


def plan(conn: sqlite3.Connection, statement: ClauseElement) -> list[str]:
    sql = str(statement.compile(dialect=sqlite.dialect()))
    return [row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", [None] * sql.count("?"))]


def reads(statement: ClauseElement) -> bool:
    sql = str(statement.compile(dialect=sqlite.dialect())).lstrip().upper()
    return sql.startswith(("SELECT", "UPDATE", "DELETE", "WITH"))


def test_every_driver_statement_seeks_an_index(schema: sqlite3.Connection) -> None:
    profiles._known_query(3, "sqlite")  # made on first use, per number of values
    checked: dict[str, list[str]] = {}
    for statement in statements.ALL:
        if statement.only == "postgresql" or statement.name.startswith(("notifications.", "locks.")):
            continue  # PostgreSQL's own functions and statements
        if not reads(statement.statement):
            continue  # an INSERT (no plan to choose)
        checked[statement.name] = steps = plan(schema, statement.statement)
        assert not [s for s in steps if s.startswith("SCAN ")], (statement.name, steps)
    assert {"firings.usage", "transactions.find", "profiles.known[3]", "links.scan"} <= checked.keys()


def test_the_per_customer_limit_counts_only_that_customers_firings(schema: sqlite3.Connection) -> None:
    steps = plan(schema, firings._USAGE.statement)
    assert len(steps) == 1 and "USING COVERING INDEX ix_rule_firings_rule" in steps[0], steps
    assert "rule=? AND profile_id=? AND fired_at>?" in steps[0]


def test_the_lift_reads_its_cohort_from_the_rules_index(schema: sqlite3.Connection) -> None:
    cohort: Any = firings.first_firings(
        pos_system_id="pax", company_id="comp5", rule="r", since=None, until=datetime.now(UTC)
    )
    steps = plan(schema, select(cohort))
    found = [s for s in steps if "rule_firings" in s]
    assert len(found) == 1 and "USING COVERING INDEX ix_rule_firings_rule" in found[0], steps


def test_the_sales_above_the_roll_ups_mark_are_a_range_of_the_key(schema: sqlite3.Connection) -> None:
    """Not the merchant's sales of the window (``ix_transactions_company_time``): that is every sale
    of a year, what the roll-up is there to spare."""
    from cmc import transactions
    from cmc.store import tables
    from cmc.store.buckets import Span

    t = tables.transactions
    span = Span("pax", "comp5", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    query = select(t.c.id).where(transactions._above("0"), *span.where(t, "occurred_at", indexed=False))
    steps = plan(schema, query)
    assert steps == ["SEARCH transactions USING INDEX sqlite_autoindex_transactions_1 (id>?)"], steps
    folded = select(t.c.id).where(t.c.id >= "0", t.c.id < "1")
    assert "INDEX sqlite_autoindex_transactions_1 (id>? AND id<?)" in plan(schema, folded)[0]


def test_the_lift_follows_its_customers_in_their_visits_index(schema: sqlite3.Connection) -> None:
    from cmc import transactions

    cohort: Any = firings.first_firings(
        pos_system_id="pax", company_id="comp5", rule="r", since=None, until=datetime.now(UTC)
    )

    class Capture:
        dialect = sqlite.dialect()
        query: Any = None

        def execute(self, query: Any) -> list[Any]:
            self.query = query
            return []

    capture = Capture()
    transactions.follow_ups(capture, cohort, horizon=datetime.now(UTC))  # type: ignore[arg-type]
    steps = plan(schema, capture.query)
    later = [s for s in steps if s.startswith("SEARCH later")]
    assert later and "USING COVERING INDEX ix_transactions_profile" in later[0], steps
