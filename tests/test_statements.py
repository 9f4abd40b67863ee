"""Every driver statement runs the same through the driver and through SQLAlchemy, on both engines.

The driver path (``cmc.store.driver``) skips SQLAlchemy's execution machinery and applies the column
types' conversions itself. This contract test replays one scenario that uses every statement twice,
on two fresh databases: once through the driver, once with ``Connection.execute`` on the same Core
statement. Rows read back (through each statement's ``into``), rows affected, and every table's
contents at the end must be equal.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

import cmc
import pg_databases
from cmc.store import migrate, statements, tables
from cmc.store.database import Database
from cmc.store.driver import Tx
from cmc.store.statements import Statement

for module in pkgutil.walk_packages(cmc.__path__, "cmc."):
    if ".migrations" not in module.name:
        importlib.import_module(module.name)

NOW = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def by_name(name: str) -> Statement[Any]:
    matches = [s for s in statements.ALL if s.name == name]
    assert matches, f"no statement {name!r}"
    return matches[-1]


def dynamic(name: str, factory: Any, count: int) -> Statement[Any]:
    statement: Statement[Any] = factory(count)
    assert statement.name == name
    return statement


def scenario(dialect: str) -> Iterator[tuple[Statement[Any], dict[str, Any] | list[dict[str, Any]]]]:
    """Every statement with parameters that make it do something (rows to find, rows to change)."""
    from cmc import cfs_feed, firings, links, profiles, transactions
    from cmc.outbox import queue

    scope = {"pos_system_id": "pax", "company_id": "comp5"}
    if dialect == "postgresql":
        yield by_name("notifications.notify"), {"channel": "cmc_test"}
    profile = {
        **scope, "id": "p-1", "first_name": "Ada", "last_name": None, "email": "ada@example.com",
        "phone": "+14155550100", "birth_date": "1990-04-11", "gender": None, "visit_count": 3,
        "lifetime_spend": Decimal("123.456789"), "has_card": True, "created_at": NOW, "updated_at": NOW,
    }  # fmt: skip
    yield by_name("profiles.insert"), profiles._INSERT_PROFILE.params(profile)
    yield by_name("profiles.update_renamed"), profiles._UPDATE_RENAMED.params({
        "pid": "p-1", "first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
        "phone": None, "birth_date": None, "gender": "F", "visit_count": 4,
        "lifetime_spend": Decimal("150.000001"), "has_card": False, "updated_at": NOW + timedelta(seconds=1),
    })  # fmt: skip
    yield by_name("profiles.update"), profiles._UPDATE_PROFILE.params({
        "pid": "p-1", "email": "ada@example.com", "phone": "+14155550100", "birth_date": None, "gender": "F",
        "visit_count": 5, "lifetime_spend": Decimal("151"), "has_card": True,
        "updated_at": NOW + timedelta(seconds=2),
    })  # fmt: skip
    identifiers = profiles._insert_identifiers(2)
    yield (
        dynamic("profiles.insert_identifiers[2]", lambda n: profiles._insert_identifiers(n).statement, 2),
        identifiers.params(
            identifiers.of_rows([
                {**scope, "kind": kind, "value": value, "profile_id": "p-1", "first_seen": NOW}
                for kind, value in (("email", "ada@example.com"), ("card", "L-1"))
            ])
        ),
    )  # fmt: skip
    yield by_name("profiles.insert_conflicts"), [
        {**scope, "transaction_id": "t-1", "kind": "card", "value": "L-1", "resolved_profile_id": "p-1",
         "other_profile_id": "p-2", "created_at": NOW},
    ]  # fmt: skip
    yield dynamic("profiles.known[2]", lambda n: profiles._known_query(n, dialect), 2), {
        "pos": "pax", "company": "comp5", "v0": "L-1", "v1": "ada@example.com",
    }  # fmt: skip
    yield by_name("transactions.insert"), {
        **scope, "id": "t-1", "pos_transaction_id": "T-1", "location_id": "loc5", "terminal_id": "term5",
        "transaction_type": "Sale", "is_reversal": False, "amount": Decimal("-12.50"),
        "occurred_at": NOW, "received_at": NOW, "profile_id": "p-1", "loyalty_card": None,
        "request_hash": "h" * 64, "request": b'{"a": 1}', "response": b'{"data": {}}',
    }  # fmt: skip
    find = {"pos": "pax", "company": "comp5", "tx": "T-1", "session": "t-1"}
    yield by_name("transactions.find"), find
    if dialect == "postgresql":
        # The replay lookup and the identifiers in one query (``Tx.together``): both parts find rows.
        known = profiles._known_query(2, dialect)
        both = statements.together([by_name("transactions.find"), known]).statement
        yield both, {**find, "v0": "L-1", "v1": "ada@example.com"}
    yield dynamic("transactions.responses[1]", transactions._responses, 1), {
        "pos": "pax", "c0": "comp5", "tx": "T-1",
    }  # fmt: skip
    three = [
        {
            **scope,
            "rule": "r",
            "profile_id": "p-1",
            "transaction_id": "t-1",
            "fired_at": NOW - timedelta(days=d),
            "variant": "holdout" if d == 3 else "treatment",
            "amount": Decimal("23.47"),
        }
        for d in (0, 3, 9)
    ]
    many = firings._insert(3)
    yield (
        dynamic("firings.insert[3]", lambda n: firings._insert(n).statement, 3),
        many.params(many.of_rows(three)),
    )
    yield by_name("firings.usage"), {
        "pos": "pax", "company": "comp5", "profile": "p-1", "rule": "r", "since": NOW - timedelta(days=7),
    }  # fmt: skip
    yield dynamic("firings.insert[1]", lambda n: firings._insert(n).statement, 1), firings._insert(1).params({
        **scope, "rule": "r2", "profile_id": "p-1", "transaction_id": "t-1", "fired_at": NOW,
        "variant": "treatment", "amount": Decimal("23.47"),
    })  # fmt: skip
    yield by_name("links.insert"), links._INSERT.params({
        **scope, "code": "abc", "location_id": "loc5", "terminal_id": "term5", "transaction_id": "t-1",
        "widget_id": 1, "title": "10% off", "target_url": "https://example.com/?c=abc", "scans": 0,
        "created_at": NOW, "last_scan_at": None, "rule": "r",
    })  # fmt: skip
    yield by_name("links.scan"), {"scanned": "abc", "now": NOW}
    yield by_name("links.record_scan"), {
        **scope, "rule": "r", "location_id": "loc5", "terminal_id": "term5", "code": "abc",
        "scanned_at": NOW, "agent": "Mobile Safari", "bot": False,
    }  # fmt: skip
    yield by_name("links.page"), {"code": "abc"}
    # Two messages in one statement; the seed opted ada@example.com out of email: one row is written.
    message = {
        "location_id": "loc5", "transaction_id": "t-1", "rule": "r", "template_id": "thanks",
        "subject": "Hi", "body": "Hello", "status": "queued", "attempts": 0, "next_attempt_at": NOW,
        "lease_until": None, "last_error": None, "created_at": NOW, "sent_at": None, "reason": None,
        "provider_id": None, "reported_at": None,
    }  # fmt: skip
    messages = [
        {**message, "id": "m-1", "channel": "email", "recipient": "ada@example.com", "optout_token": "tok1"},
        {**message, "id": "m-2", "channel": "sms", "recipient": "+14155550100", "optout_token": "tok2"},
    ]
    yield dynamic("outbox.enqueue[2]", queue._enqueue_query, 2), {
        "pos": "pax", "company": "comp5",
        **{f"{name}{n}": value for n, row in enumerate(messages) for name, value in row.items()},
    }  # fmt: skip
    yield by_name("cfs_feed.publish"), cfs_feed._INSERT.params({
        "pos_system_id": "pax", "location_id": "loc5", "terminal_id": "term5",
        "payload": {"firstName": "Ada", "code": "abc", "n": [1, 2]},
        "created_at": NOW,
    })  # fmt: skip
    if dialect == "postgresql":
        # A sale's insert carrying its profile's update and its screen's event (``Tx.defer``).
        carried = [profiles._UPDATE_PROFILE, cfs_feed._INSERT]
        CARRIED["transactions.insert[profiles.update+cfs_feed.publish]"] = carried
        yield statements.carrying(transactions._INSERT, carried), {
            **scope, "id": "t-2", "pos_transaction_id": "T-2", "location_id": "loc5", "terminal_id": "term7",
            "transaction_type": "Sale", "is_reversal": False, "amount": Decimal("7"), "occurred_at": NOW,
            "received_at": NOW, "profile_id": "p-1", "loyalty_card": "L-1", "request_hash": "i" * 64,
            "request": b"{}", "response": b"{}",
            **profiles._UPDATE_PROFILE.params({
                "pid": "p-1", "email": "ada@example.com", "phone": None, "birth_date": None, "gender": None,
                "visit_count": 6, "lifetime_spend": Decimal("158"), "has_card": True,
                "updated_at": NOW + timedelta(seconds=3),
            }),
            **cfs_feed._INSERT.params({
                "pos_system_id": "pax", "location_id": "loc5", "terminal_id": "term7",
                "payload": {"firstName": "Ada"}, "created_at": NOW,
            }),
        }  # fmt: skip
        # A QR sale's insert carrying the rule's firing, its short link and the screen event's NOTIFY.
        carried = [firings._insert(1), links._INSERT, cfs_feed._INSERT_AND_WAKE]
        CARRIED["transactions.insert[firings.insert[1]+links.insert+cfs_feed.publish_and_wake]"] = carried
        yield statements.carrying(transactions._INSERT, carried), {
            **scope, "id": "t-3", "pos_transaction_id": "T-3", "location_id": "loc5", "terminal_id": "term8",
            "transaction_type": "Sale", "is_reversal": False, "amount": Decimal("7"), "occurred_at": NOW,
            "received_at": NOW, "profile_id": "p-1", "loyalty_card": None, "request_hash": "j" * 64,
            "request": b"{}", "response": b"{}",
            **firings._insert(1).params({
                **scope, "rule": "r3", "profile_id": "p-1", "transaction_id": "t-3", "fired_at": NOW,
                "variant": "treatment", "amount": Decimal("7"),
            }),
            **links._INSERT.params({
                **scope, "code": "xyz", "location_id": "loc5", "terminal_id": "term8",
                "transaction_id": "t-3", "widget_id": 2, "title": "Review",
                "target_url": "https://example.com/r", "scans": 0, "created_at": NOW,
                "last_scan_at": None, "rule": "r3",
            }),
            **cfs_feed._INSERT_AND_WAKE.params({
                "pos_system_id": "pax", "location_id": "loc5", "terminal_id": "term8",
                "payload": {"firstName": "Cy"}, "created_at": NOW,
            }),
        }  # fmt: skip
        yield by_name("cfs_feed.publish_and_wake"), cfs_feed._INSERT_AND_WAKE.params({
            "pos_system_id": "pax", "location_id": "loc5", "terminal_id": "term6",
            "payload": {"firstName": "Ben"}, "created_at": NOW,
        })  # fmt: skip


def test_the_scenario_covers_every_statement() -> None:
    used = {s.name for s, _ in scenario("postgresql")}
    static = {s.name for s in statements.ALL if "[" not in s.name}
    assert static <= used, f"statements without a contract case: {static - used}"
    # Statements made per number of values, on first use: the tender path's families have a case.
    families = {name.split("[")[0] for name in used}
    assert {
        "profiles.known",
        "profiles.insert_identifiers",
        "outbox.enqueue",
        "firings.insert",
        "transactions.responses",
        "together",
    } <= families


def seed(conn: Connection) -> None:
    conn.execute(
        tables.opt_outs.insert().values(
            pos_system_id="pax",
            company_id="comp5",
            channel="email",
            recipient="ada@example.com",
            created_at=NOW,
        )
    )
    conn.execute(tables.pos_systems.insert().values(id="pax", name="PAX", status="Accepted", settings={}))
    conn.execute(
        tables.api_clients.insert().values(client_id="pax-demo", pos_system_id="pax", secret_hash="x")
    )


async def through_driver(db: Database) -> list[Any]:
    async def run(tx: Tx) -> list[Any]:
        results: list[Any] = []
        for statement, params in scenario(db.dialect):
            if isinstance(params, list):
                await tx.execute_many(statement, params)
                results.append(None)
            elif statement.keys is None and _reads(statement):
                results.append(await tx.all(statement, params))
            else:
                results.append(await tx.execute(statement, params))
        return results

    return await db.transact(run)


CARRIED: dict[str, list[statements.Write]] = {}
"""The writes each carrying statement of the scenario carries: SQLAlchemy runs them one by one."""


def through_sqlalchemy(conn: Connection) -> list[Any]:
    results: list[Any] = []
    for statement, params in scenario(conn.dialect.name):
        if isinstance(params, dict) and statement.name in CARRIED:
            # What the one statement must equal: each carried write, then the carrying statement.
            own = dict(params)
            for write in CARRIED[statement.name]:
                mine = {name: own.pop(name) for name in list(own) if name.startswith(write.prefix)}
                conn.execute(write.statement.statement, mine)
            outer = by_name(statement.name.split("[")[0])
            result = conn.execute(outer.statement, own)
            results.append([outer.into(*row) for row in result] if _reads(outer) else result.rowcount)
            continue
        result = conn.execute(statement.statement, params)
        if isinstance(params, list):
            results.append(None)
        elif statement.keys is None and _reads(statement):
            results.append([statement.into(*row) for row in result])
        else:
            results.append(result.rowcount)
    return results


def _reads(statement: Statement[Any]) -> bool:
    return bool(statement.compiled("sqlite").results)


def contents(conn: Connection) -> dict[str, list[Any]]:
    return {
        name: sorted((tuple(row) for row in conn.execute(select(table))), key=repr)
        for name, table in tables.metadata.tables.items()
    }


@pytest.fixture
def two_databases(backend: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/driver.db", f"sqlite:///{tmp_path}/core.db"
        return
    first, second = pg_databases.create(), pg_databases.create()
    try:
        yield first, second
    finally:
        pg_databases.drop(first)
        pg_databases.drop(second)


async def test_driver_and_sqlalchemy_agree(two_databases: tuple[str, str]) -> None:
    driver_db, core_db = (Database.open(url) for url in two_databases)
    try:
        for db in (driver_db, core_db):
            await asyncio.to_thread(migrate.upgrade, db)
            await db.write(seed)
        by_driver = await through_driver(driver_db)
        by_core = await core_db.write(through_sqlalchemy)
        for (statement, _), ours, theirs in zip(scenario(driver_db.dialect), by_driver, by_core, strict=True):
            assert ours == theirs, statement.name
        assert await driver_db.read(contents) == await core_db.read(contents)
        # The scenario did find and change rows: equal results are not two empty answers.
        assert any(isinstance(r, list) and r for r in by_driver)
        assert by_driver[[s.name for s, _ in scenario(driver_db.dialect)].index("links.scan")] == [
            ("https://example.com/?c=abc", "pax", "comp5", "r", "loc5", "term5")
        ]
    finally:
        await driver_db.close()
        await core_db.close()
