"""What a tender sends to PostgreSQL: the round trips of the hot path, counted on the real driver.

Each statement of a driver unit is a round trip; a write deferred by ``Tx.defer`` travels inside the
sale's own insert (``statements.carrying``). A returning customer's sale at a screen terminal is the
common case: its profile update and its screen's event must not cost a round trip each.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, delete, func, select

import pg_databases
from cmc import cfs_feed, firings, profiles, transactions
from cmc.screens import Screen
from cmc.store import driver, migrate, notifications, statements, tables
from cmc.store.database import Database, libpq_dsn
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from support import Api, seed_transaction

DEMO = Path(__file__).parent.parent / "examples" / "demo.yaml"
pytestmark = pytest.mark.skipif(
    not pg_databases.POSTGRES_URL, reason="PostgreSQL only: set CMC_TEST_POSTGRES_URL"
)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of every statement the PostgreSQL driver sends (it still sends them)."""
    statements: list[str] = []
    for method in ("_execute", "_execute_many", "_fetch"):
        original = getattr(driver.PgTx, method)

        async def counted(self: driver.PgTx, sql: str, args: Any, _original: Any = original) -> Any:
            statements.append(sql)
            return await _original(self, sql, args)

        monkeypatch.setattr(driver.PgTx, method, counted)
    begin = driver.PgTx._begin

    async def begun(self: driver.PgTx, first: str = "") -> None:
        if first:  # a statement that travels with the BEGIN: a round trip of its own (BEGIN is not)
            statements.append(first)
        await begin(self, first)

    monkeypatch.setattr(driver.PgTx, "_begin", begun)
    return statements


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    """A migrated PostgreSQL database of its own, for units run on the driver directly."""
    url = pg_databases.create()
    database = Database.open(url)
    try:
        await asyncio.to_thread(migrate.upgrade, database)
        yield database
    finally:
        await database.close()
        pg_databases.drop(url)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_returning_customers_sale_at_a_screen_is_three_statements(api: Api, sent: list[str]) -> None:
    assert (await api.tender(seed_transaction(terminalId="term5"))).status_code == 200
    sent.clear()
    answer = await api.tender(seed_transaction(terminalId="term5"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["profile"]["id"]
    # The named locks; one query: the replay and session lookup with the customer's identifiers and
    # profile (locked); then one statement: the profile's update and the screen's event carried by
    # the sale's insert.
    assert len(sent) == 3, sent
    assert "pg_advisory_xact_lock" in sent[0]
    lookups = " ".join(sent[1].split())
    assert "FROM transactions" in lookups and "FROM profile_identifiers" in lookups
    assert "FOR UPDATE OF profiles" in lookups and "UNION ALL" in lookups
    last = " ".join(sent[-1].split())
    assert last.startswith("WITH profiles_update AS (UPDATE profiles")
    assert "INSERT INTO cfs_events" in last and "INSERT INTO transactions" in last


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_the_transactions_begin_travels_with_its_locks(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BEGIN is not a round trip of its own: it goes in one message with the sale's named locks."""
    scripts: list[str] = []
    execute = asyncpg.Connection.execute

    async def recorded(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        if not args:  # the simple query protocol: BEGIN, COMMIT, ROLLBACK and what travels with them
            scripts.append(" ".join(query.split()))
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", recorded)
    assert (await api.tender(seed_transaction(terminalId="term5"))).status_code == 200
    # The driver's own (SQLAlchemy's asyncpg adapter, off the tender path, sends "BEGIN;").
    sale = [s for s in scripts if s in ("BEGIN", "COMMIT", "ROLLBACK") or s.startswith("BEGIN; ")]
    assert len(sale) == 2, scripts
    assert sale[0].startswith("BEGIN; SELECT count(pg_advisory_xact_lock(k))"), sale
    assert sale[1] == "COMMIT"


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_failed_unit_rolls_back_and_leaves_its_connection_clean(api: Api) -> None:
    """A sale that fails after its BEGIN (a conflicting replay) rolls back; the next one works."""
    # asyncpg's pool would roll back a connection handed back inside a transaction, and tell the
    # loop's exception handler: the unit must have rolled back itself.
    loop = asyncio.get_running_loop()
    reported: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: reported.append(str(context.get("message"))))
    try:
        await _a_conflict_then_sales(api)
    finally:
        loop.set_exception_handler(previous)
    assert not [m for m in reported if "active transaction" in m], reported


async def _a_conflict_then_sales(api: Api) -> None:
    body = seed_transaction(terminalId="term5")
    assert (await api.tender(body)).status_code == 200
    assert (await api.tender({**body, "transactionAmount": 1})).status_code == 409  # same id, new body
    for _ in range(12):  # more than the pool's connections: every one of them was handed back clean
        assert (await api.tender(seed_transaction(terminalId="term5"))).status_code == 200


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_new_customers_sale_is_three_statements_too(api: Api, sent: list[str]) -> None:
    answer = await api.tender(seed_transaction(terminalId="term5"))
    assert answer.status_code == 200, answer.text
    # The profile and its identifiers travel in the sale's insert, like a returning one's update.
    assert len(sent) == 3, sent
    carrying = " ".join(sent[-1].split())
    assert "INSERT INTO profiles" in carrying and "INSERT INTO profile_identifiers" in carrying


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_carried_write_is_stored(api: Api) -> None:
    first = await api.tender(seed_transaction(terminalId="term5"))
    second = await api.tender(seed_transaction(terminalId="term5"))
    assert first.status_code == second.status_code == 200
    db = api.db()
    try:

        def read(conn: Any) -> tuple[int, int]:
            visits = conn.exec_driver_sql("SELECT visit_count FROM profiles").scalar_one()
            events = conn.exec_driver_sql("SELECT count(*) FROM cfs_events").scalar_one()
            return int(visits), int(events)

        assert await db.read(read) == (2, 2)
    finally:
        await db.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_qr_rule_firing_adds_no_round_trip(api_factory: Any, sent: list[str]) -> None:
    """The demo's "edibles fan" rule: a firing, a short link and a screen event that must NOTIFY."""
    async with api_factory(registry=DEMO) as api:

        def edibles() -> dict[str, Any]:
            body = seed_transaction(terminalId="term5", transactionAmount=80)
            body["products"][0].update(productCategory="Edibles", quantity=2)
            return body

        assert (await api.tender(edibles())).status_code == 200
        sent.clear()
        answer = await api.tender(edibles())
        assert answer.status_code == 200, answer.text
        assert [e["rule"] for e in answer.json()["data"]["effects"]] == ["edibles fan"]
        # As many statements as a sale without rules: the sale's insert carries all four writes.
        assert len(sent) == 3, sent
        carrying = " ".join(sent[2].split())
        for write in ("UPDATE profiles", "INSERT INTO rule_firings", "INSERT INTO short_links", "cfs_events"):
            assert write in carrying, (write, carrying)
        assert "pg_notify" in carrying
        assert "INSERT INTO transactions" in carrying


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_the_carried_notify_reaches_a_listener_once_per_qr_sale(api_factory: Any) -> None:
    """The QR's NOTIFY is a RETURNING of a CTE nothing reads: PostgreSQL must still send it."""
    async with api_factory(registry=DEMO) as api:
        db = api.db()
        heard: asyncio.Queue[str] = asyncio.Queue()
        listener = await asyncpg.connect(libpq_dsn(db.url.render_as_string(hide_password=False)))
        try:
            await listener.add_listener(notifications.CFS_CHANNEL, lambda *args: heard.put_nowait(args[2]))
            plain = seed_transaction(terminalId="term5", transactionAmount=80)
            plain["products"][0]["quantity"] = 1  # no rule fires: a thank-you alone, no NOTIFY
            answer = await api.tender(plain)
            assert answer.status_code == 200 and not answer.json()["data"]["qrCodeWidget"], answer.text
            qr = seed_transaction(terminalId="term5", transactionAmount=80)  # "edibles fan" fires
            answer = await api.tender(qr)
            assert answer.status_code == 200 and answer.json()["data"]["qrCodeWidget"], answer.text
            assert await asyncio.wait_for(heard.get(), 5) == notifications.CFS_CHANNEL
            await asyncio.sleep(0.3)
            assert heard.empty()  # one sale, one NOTIFY
        finally:
            await listener.close()
            await db.close()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_rule_that_sends_messages_adds_two_statements(api_factory: Any, sent: list[str]) -> None:
    """The demo's "mid-basket coupon": its per-customer limit's count, then the messages' insert."""
    async with api_factory(registry=DEMO) as api:
        assert (
            await api.tender(seed_transaction(terminalId="term5", transactionAmount=80))
        ).status_code == 200
        sent.clear()
        answer = await api.tender(seed_transaction(terminalId="term5", transactionAmount=30))
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert data["notificationMessageId"] and data["qrCodeWidget"]
        assert len(sent) == 5, "\n".join(" ".join(x.split())[:100] for x in sent)
        assert "FROM rule_firings" in sent[2]
        enqueue = " ".join(sent[3].split())
        assert enqueue.startswith("INSERT INTO messages") and "opt_outs" in enqueue  # one statement
        assert "INSERT INTO transactions" in sent[4]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_new_customers_limited_rule_counts_nothing(api_factory: Any, sent: list[str]) -> None:
    """A profile the sale creates has no earlier firings: the limit's count is not asked for."""
    async with api_factory(registry=DEMO) as api:
        answer = await api.tender(seed_transaction(terminalId="term5", transactionAmount=30))
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert data["notificationMessageId"] and data["qrCodeWidget"]  # the limited rule fired
        # Locks, lookups, the messages, then the sale's insert carrying the new profile and its
        # identifiers: no count, and no round trip for the new customer either.
        assert not [sql for sql in sent if "FROM rule_firings" in sql], sent
        assert len(sent) == 4, "\n".join(" ".join(x.split())[:100] for x in sent)
        carrying = " ".join(sent[-1].split())
        for write in ("INSERT INTO profiles", "INSERT INTO profile_identifiers", "INSERT INTO transactions"):
            assert write in carrying, (write, carrying)
        # The same customer again, within the limit's window: now counted, and held to it.
        sent.clear()
        again = await api.tender(seed_transaction(terminalId="term5", transactionAmount=30))
        assert again.status_code == 200, again.text
        assert [sql for sql in sent if "FROM rule_firings" in sql]
        assert not again.json()["data"]["notificationMessageId"]


async def test_a_deferred_write_runs_before_a_statement_on_its_table_and_at_the_units_end(
    db: Database,
) -> None:
    count = Statement(
        select(func.count()).select_from(tables.cfs_events), name="test.events[count]", only="postgresql"
    )
    none_deleted = Statement(
        delete(tables.cfs_events).where(tables.cfs_events.c.id < 0),
        name="test.events[delete]",
        only="postgresql",
    )
    screen = Screen("pax", "loc5", "term5")
    since = datetime(2026, 1, 1, tzinfo=UTC)

    async def unit(tx: Tx) -> tuple[int, ...] | None:
        await cfs_feed.publish(tx, screen, {"firstName": "Ada"}, now=since, wake=False)
        assert tx.deferred == 1
        usage = {"pos": "pax", "company": "comp5", "profile": "p", "rule": "r", "since": since}
        await tx.all(firings._USAGE, usage)  # another table: the event can still wait
        assert tx.deferred == 1
        seen = await tx.first(count)  # its own table: the event is written first
        assert tx.deferred == 0
        await cfs_feed.publish(tx, screen, {"firstName": "Cy"}, now=since, wake=False)
        await cfs_feed.publish(tx, screen, {"firstName": "Dee"}, now=since, wake=True)
        assert tx.deferred == 1  # a second write of the table: the first one ran
        # A carrier on the deferred write's own table would not see it: it runs first.
        assert await tx.execute(none_deleted, carry=True) == 0
        assert tx.deferred == 0
        await cfs_feed.publish(tx, screen, {"firstName": "Ben"}, now=since, wake=False)
        return seen  # the unit ends with that one deferred: the commit must not lose it

    assert await db.transact(unit) == (1,)
    assert await db.query(lambda tx: tx.first(count)) == (4,)


async def test_two_deferred_writes_of_one_table_do_not_share_a_statement(db: Database) -> None:
    """In one statement PostgreSQL would apply only one of two updates of a row."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    row = {
        "email": None, "phone": None, "birth_date": None, "gender": None, "lifetime_spend": 1,
        "has_card": False, "updated_at": when, "pid": "p-1",
    }  # fmt: skip

    async def unit(tx: Tx) -> None:
        new_profile = profiles._INSERT_PROFILE
        await tx.execute(
            new_profile.statement,
            new_profile.params(
                {**row, "id": "p-1", "pos_system_id": "pax", "company_id": "comp5", "first_name": None,
                 "last_name": None, "visit_count": 1, "created_at": when}
            ),
        )  # fmt: skip
        await tx.defer(profiles._UPDATE_PROFILE, {**row, "visit_count": 2})
        await tx.defer(
            profiles._UPDATE_RENAMED, {**row, "visit_count": 3, "first_name": "A", "last_name": "B"}
        )
        assert tx.deferred == 1  # the first update ran before the second was deferred

    await db.transact(unit)
    visits = Statement(select(tables.profiles.c.visit_count), name="test.visits[read]", only="postgresql")
    assert await db.query(lambda tx: tx.first(visits)) == (3,)


async def test_two_queries_together_answer_as_they_would_apart(db: Database) -> None:
    """``Tx.together``: one round trip, each part's rows as its own query gives them, typed alike."""
    when = datetime(2026, 1, 1, tzinfo=UTC)

    def seed(conn: Any) -> None:
        conn.execute(tables.profiles.insert().values(
            id="p-1", pos_system_id="pax", company_id="comp5", first_name="Ada", visit_count=2,
            lifetime_spend=Decimal("10.5"), has_card=True, created_at=when, updated_at=when,
        ))  # fmt: skip
        conn.execute(tables.profile_identifiers.insert().values(
            pos_system_id="pax", company_id="comp5", kind="email", value="ada@example.com",
            profile_id="p-1", first_seen=when,
        ))  # fmt: skip
        conn.execute(tables.transactions.insert().values(
            id="s-1", pos_system_id="pax", company_id="comp5", pos_transaction_id="T-1",
            location_id="loc5", terminal_id="term5", transaction_type="Sale", is_reversal=False,
            amount=Decimal("10.5"), occurred_at=when, received_at=when, profile_id="p-1",
            request_hash="h", request=b"{}", response=b'{"data": {}}',
        ))  # fmt: skip

    await db.write(seed)
    claim = profiles.Claim((profiles.Identifier("email", "ada@example.com"),))
    scope = profiles.Scope("pax", "comp5")
    find = transactions.find(pos_system_id="pax", company_id="comp5", transaction_id="T-1", session_id="s-2")

    async def unit(tx: Tx) -> tuple[Any, Any]:
        known = profiles.known(claim, scope, tx.dialect)
        assert known is not None
        apart = (await tx.all(find.statement, find.params), await tx.all(known.statement, known.params))
        return apart, await tx.together(find, known)

    apart, together = await db.transact(unit)
    assert together == apart
    (stored,), ((identifier, profile),) = together
    assert stored.response == b'{"data": {}}' and stored.pos_transaction_id == "T-1"
    assert identifier == ("email", "ada@example.com")
    assert (profile.id, profile.lifetime_spend, profile.has_card) == ("p-1", Decimal("10.5"), True)

    async def disagreeing(tx: Tx) -> None:
        other = transactions.find(
            pos_system_id="pax", company_id="comp9", transaction_id="T-1", session_id="s-2"
        )
        await tx.together(find, other)

    with pytest.raises(ValueError, match="disagree on 'company'"):
        await db.transact(disagreeing)


@pytest.mark.parametrize("together", [False, True], ids=["alone", "with the replay lookup"])
async def test_the_identifiers_survive_a_wait_on_their_updated_profile(db: Database, together: bool) -> None:
    """A sale that waits on its customer's profile while another sale updates it gets every identifier.

    PostgreSQL re-reads a locked row that changed while it waited (EvalPlanQual) and re-checks the
    query on it; over a flattened ``UNION ALL`` of the probes that re-check answered the first probe's
    row for every probe, so a known identifier looked new, and its insert failed on the key.
    """
    when = datetime(2026, 1, 1, tzinfo=UTC)
    values = {"email": "ada@example.com", "phone": "+15550100", "card": "C-1"}

    def seed(conn: Any) -> None:
        conn.execute(tables.profiles.insert().values(
            id="p-1", pos_system_id="pax", company_id="comp5", visit_count=1, lifetime_spend=Decimal(1),
            has_card=True, created_at=when, updated_at=when,
        ))  # fmt: skip
        conn.execute(tables.profile_identifiers.insert(), [
            {"pos_system_id": "pax", "company_id": "comp5", "kind": kind, "value": value,
             "profile_id": "p-1", "first_seen": when}
            for kind, value in values.items()
        ])  # fmt: skip

    await db.write(seed)
    claim = profiles.Claim(tuple(profiles.Identifier(kind, value) for kind, value in values.items()))
    scope = profiles.Scope("pax", "comp5")
    find = transactions.find(pos_system_id="pax", company_id="comp5", transaction_id="T-1", session_id="s-1")

    async def lookup(tx: Tx) -> profiles.Found:
        known = profiles.known(claim, scope, tx.dialect)
        assert known is not None
        rows = (
            (await tx.together(find, known))[1] if together else await tx.all(known.statement, known.params)
        )
        return profiles.known_of(claim, rows)

    dsn = libpq_dsn(db.url.render_as_string(hide_password=False))
    # The holder's transaction sees one snapshot of pg_stat_activity: another connection watches.
    holder, watcher = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    lock_waits = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    try:
        waiting = await watcher.fetchval(lock_waits)
        await holder.execute("BEGIN; SELECT id FROM profiles WHERE id = 'p-1' FOR UPDATE")
        sale = asyncio.create_task(db.transact(lookup))
        for _ in range(500):  # until the lookup waits on the profile's lock
            if await watcher.fetchval(lock_waits) > waiting or sale.done():
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the lookup never waited on the profile's lock")
        await holder.execute("UPDATE profiles SET visit_count = visit_count + 1 WHERE id = 'p-1'; COMMIT")
        found = await asyncio.wait_for(sale, 10)
    finally:
        await holder.close()
        await watcher.close()
    assert {ident.kind: ident.value for ident in found} == values
    assert {state.id for state in found.values()} == {"p-1"}
    assert {state.visit_count for state in found.values()} == {2}  # the profile as it was committed


async def test_together_keeps_each_parts_rows_and_types_with_three_parts(db: Database) -> None:
    """None, one or several rows per part; a part's timestamps stay timestamps beside two parts of
    NULLs there (a bare NULL would make the column text); names are no key for another statement."""
    when = datetime(2026, 1, 1, tzinfo=UTC)

    def seed(conn: Any) -> None:
        conn.execute(tables.profiles.insert(), [
            {"id": f"p-{n}", "pos_system_id": "pax", "company_id": "comp5", "visit_count": n,
             "lifetime_spend": Decimal(n), "has_card": False, "created_at": when, "updated_at": when}
            for n in (1, 2)
        ])  # fmt: skip

    await db.write(seed)
    p = tables.profiles
    by_company = Statement(
        select(p.c.id, p.c.created_at).where(p.c.company_id == bindparam("company")).order_by(p.c.id),
        name="test[by_company]",
    )
    none = Statement(select(p.c.visit_count).where(p.c.id == bindparam("missing")), name="test[none]")
    spend = Statement(select(p.c.lifetime_spend, p.c.id).where(p.c.id == "p-2"), name="test[spend]")
    combined = statements.together([none, spend, by_company])

    async def unit(tx: Tx) -> list[list[Any]]:
        rows = await tx.all(combined.statement, {"company": "comp5", "missing": "p-9"})
        return combined.split(rows)

    nothing, spent, listed = await db.transact(unit)
    assert nothing == []
    assert spent == [(Decimal(2), "p-2")]
    assert sorted(listed) == [("p-1", when), ("p-2", when)]
    assert all(isinstance(at, datetime) for _, at in listed)
    namesake = Statement(select(p.c.id), name="test[none]")
    with pytest.raises(ValueError, match="same name"):
        statements.together([namesake, spend, by_company])
    # Made for this test only: the contract and the query-plan tests walk statements.ALL.
    made = (by_company, none, spend, namesake, combined.statement)
    statements.ALL[:] = [s for s in statements.ALL if not any(s is m for m in made)]


async def test_two_queries_that_disagree_are_refused_on_sqlite_too(tmp_path: Path) -> None:
    database = Database.open(f"sqlite:///{tmp_path}/cmc.db")
    try:
        await asyncio.to_thread(migrate.upgrade, database)
        find = transactions.find(
            pos_system_id="pax", company_id="comp5", transaction_id="T-1", session_id="s"
        )
        other = transactions.find(
            pos_system_id="pax", company_id="comp9", transaction_id="T-1", session_id="s"
        )

        async def disagreeing(tx: Tx) -> None:
            await tx.together(find, other)

        with pytest.raises(ValueError, match="disagree on 'company'"):
            await database.transact(disagreeing)
    finally:
        await database.close()
