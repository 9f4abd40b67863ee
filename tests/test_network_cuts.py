"""The network between CMC and PostgreSQL falls silent (half-open connections), then comes back.

Through ``blackhole.Blackhole``, a proxy whose flows lose every byte and every FIN. The timeouts
are shortened in proportion to production's (named in each test), so what happens here in a
second happens there in the figure the test names. What must hold: a POS hears 503 within the
statement timeout and its retry is stored exactly once; the pools stop handing out dead
connections as soon as one is found; the outbox never sends a message twice; shutdown is bounded.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Connection, bindparam, func, select, text

import pg_databases
from blackhole import blackhole_for
from cmc.errors import StoreUnavailable
from cmc.outbox import Dispatcher, dispatch
from cmc.outbox.senders import Outgoing
from cmc.store import database, failures, migrate
from cmc.store.database import Database, libpq_dsn
from cmc.store.driver import Tx
from cmc.store.statements import Statement
from support import make_settings, seed_transaction
from test_outbox_dispatch import attempts, enqueue, row, seed_registry

# The driver path's COMMIT, a simple-query message of its own.
DRIVER_COMMIT = b"Q\x00\x00\x00\x0bCOMMIT\x00"

pytestmark = pytest.mark.usefixtures("garbage_collected")


@pytest.fixture
def postgres(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("the network between CMC and PostgreSQL; SQLite has none")


async def scalar(url: str, sql: str, *args: object) -> object:
    """One value, asked straight of the server (not through the proxy)."""
    conn = await asyncpg.connect(libpq_dsn(url))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


# --- a sale whose COMMIT falls silent, through the real app ---------------------------------------


@pytest.mark.parametrize(
    "forward", [True, False], ids=["the commit reached the server", "the commit was lost"]
)
async def test_a_sale_cut_off_at_its_commit_is_503_and_its_retry_is_stored_once(
    postgres: None,
    database_url: str,
    api_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    forward: bool,
) -> None:
    """Production: 5 s statement timeout, 4 s idle-in-transaction; here 1 s and 0.8 s.

    Whether the COMMIT happened or not, the POS hears 503, and its first retry with the same
    session and body is answered 200 with the one stored sale: the cut-off transaction's locks
    were freed by the server before the 503 came back, so the retry does not wait for them.
    """
    monkeypatch.setattr(database, "STATEMENT_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(database, "IDLE_IN_TRANSACTION_SECONDS", 0.8)
    async with (
        blackhole_for(database_url) as proxy,
        api_factory(database_url=proxy.url_for(database_url)) as api,
    ):
        body = seed_transaction(sessionId=await api.session())
        proxy.cut_on(DRIVER_COMMIT, forward=forward)
        started = time.monotonic()
        first = await api.send(body)
        assert proxy.triggered.is_set()
        assert first.status_code == 503, first.text
        assert first.headers["Retry-After"]
        assert time.monotonic() - started < 3
        retry = await api.send(body)
        assert retry.status_code == 200, retry.text
        count = "SELECT count(*) FROM transactions WHERE pos_transaction_id = $1"
        assert await scalar(database_url, count, body["transactionId"]) == 1
        stored = "SELECT id FROM transactions WHERE pos_transaction_id = $1"
        assert retry.json()["data"]["id"] == await scalar(database_url, stored, body["transactionId"])


# --- the pools after a flap: dead idle connections are found once, not once each -----------------


async def test_after_a_flap_one_tender_finds_the_dead_connections_not_one_each(
    postgres: None,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    made_statement: Callable[..., Statement[Any]],
) -> None:
    """Production: 5 s; here 0.5 s. Six idle connections of the hot path's pool are cut while the
    network is quiet, and it is back before the next tender: the first unit that meets a dead one
    fails (503), and every later one gets a fresh connection instead of the next dead one."""
    monkeypatch.setattr(database, "STATEMENT_TIMEOUT_SECONDS", 0.5)
    pausing = made_statement(select(func.pg_sleep(0.2)), name="test[pause]")
    clock = made_statement(select(func.now()), name="test[now]")
    async with blackhole_for(database_url) as proxy:
        db = Database.open(proxy.url_for(database_url))
        try:

            async def pause(tx: Tx) -> None:
                await tx.first(pausing)

            async def now(tx: Tx) -> object:
                return await tx.first(clock)

            await asyncio.gather(*(db.transact(pause) for _ in range(6)))
            proxy.silence()
            proxy.heal()
            outcomes = []
            for _ in range(6):
                try:
                    await asyncio.wait_for(db.transact(now), 10)
                    outcomes.append("ok")
                except StoreUnavailable:
                    outcomes.append("503")
            assert outcomes == ["503"] + ["ok"] * 5
        finally:
            await asyncio.wait_for(db.close(), 5)


async def test_a_statement_given_up_on_while_it_waits_for_a_lock_leaves_nothing_queued(
    postgres: None,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    made_statement: Callable[..., Statement[Any]],
) -> None:
    """Production: 5 s; here 0.5 s. A sale that waits longer than the timeout for a lock (behind a
    migration's index build, or a cut-off sale) is 503, and its connection is dropped; the server
    must end its statement too. Left queued, each would hold its place and the locks it already
    took, and the timeouts of a busy minute would exhaust the server's connections."""
    monkeypatch.setattr(database, "STATEMENT_TIMEOUT_SECONDS", 0.5)
    lock = func.pg_advisory_xact_lock(bindparam("key"))
    waiting = made_statement(select(lock.is_(None)), name="test[wait]")
    holder = await asyncpg.connect(libpq_dsn(database_url))
    db = Database.open(database_url)
    try:
        await holder.execute("BEGIN")
        await holder.execute("SELECT pg_advisory_xact_lock(4242)")

        async def wait(tx: Tx) -> None:
            await tx.first(waiting, {"key": 4242})

        ends = await asyncio.gather(
            *(asyncio.wait_for(db.transact(wait), 10) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(end, StoreUnavailable) for end in ends), ends
        queued = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        deadline = time.monotonic() + 5
        while await holder.fetchval(queued):
            assert time.monotonic() < deadline, "statements CMC gave up on still wait for the lock"
            await asyncio.sleep(0.1)
    finally:
        await holder.execute("ROLLBACK")
        await holder.close()
        await asyncio.wait_for(db.close(), 5)


def _select(value: str) -> Callable[[Connection], object]:
    def fn(conn: Connection) -> object:
        return conn.execute(text("SELECT :value"), {"value": value}).scalar()

    return fn


async def test_after_a_flap_one_engine_request_finds_the_dead_connections_not_one_each(
    postgres: None, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production: 20 s; here 0.5 s. The console's, the merchant API's and the dispatcher's pool:
    three idle connections are cut while the network is quiet, and it is back before the next
    request. The first request meets a dead one and fails as transient (503); that marks the pool
    stale, so the next requests get fresh connections instead of the other dead ones."""
    monkeypatch.setattr(database, "ENGINE_STATEMENT_TIMEOUT_SECONDS", 0.5)
    async with blackhole_for(database_url) as proxy:
        db = Database.open(proxy.url_for(database_url))
        try:
            pause = text("SELECT pg_sleep(0.2)")
            await asyncio.gather(*(db.write(lambda conn: conn.execute(pause)) for _ in range(3)))
            proxy.silence()
            proxy.heal()
            answers: list[object] = []
            for n in range(4):
                try:
                    answers.append(await asyncio.wait_for(db.write(_select(f"after-{n}")), 10))
                except Exception as exc:
                    answers.append(exc)
            assert isinstance(answers[0], TimeoutError)
            assert failures.is_transient(answers[0])
            assert answers[1:] == ["after-1", "after-2", "after-3"]
        finally:
            await asyncio.wait_for(db.close(), 5)


@pytest.mark.parametrize("pool", ["engine", "driver"])
async def test_shutdown_does_not_wait_on_silent_connections(
    postgres: None, database_url: str, pool: str, made_statement: Callable[..., Statement[Any]]
) -> None:
    """With production's timeouts: ``cmc serve`` and ``cmc worker`` close their pools on SIGTERM,
    and an orchestrator's grace period (often 30 s) is shorter than what a graceful close of a
    silent connection would wait."""
    async with blackhole_for(database_url) as proxy:
        db = Database.open(proxy.url_for(database_url))
        if pool == "engine":
            await db.write(_select("idle"))
        else:
            clock = made_statement(select(func.now()), name="test[now]")

            async def nothing(tx: Tx) -> None:
                await tx.first(clock)

            await db.query(nothing)
        proxy.silence()
        started = time.monotonic()
        await asyncio.wait_for(db.close(), 20)
        assert time.monotonic() - started < 3 * database.CLOSE_TIMEOUT_SECONDS


# --- the outbox: a sent message whose recording falls silent is sent once -------------------------


def test_the_recording_tries_end_inside_the_lease() -> None:
    """Each try of recording a pass can take a whole statement timeout on a silent connection; if
    the tries outlived the lease, another dispatcher would claim the sent message and send it again."""
    lease = Dispatcher.__init__.__kwdefaults__["lease"]
    worst = dispatch.RECORD_TRIES * (
        database.ENGINE_STATEMENT_TIMEOUT_SECONDS + dispatch.RECORD_BACKOFF_CAP.total_seconds()
    )
    assert worst < lease.total_seconds()


class Counting:
    """A sender that counts what it was given, per message."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    async def send(self, message: Outgoing) -> str | None:
        self.sent[message.id] += 1
        return None

    async def aclose(self) -> None:
        return None


@pytest.fixture
async def outbox(postgres: None) -> AsyncIterator[str]:
    url = pg_databases.create()
    try:
        db = Database.open(url)
        await asyncio.to_thread(migrate.upgrade, db)
        await db.write(seed_registry)
        await db.close()
        yield url
    finally:
        pg_databases.drop(url)


async def test_a_sent_message_whose_recording_falls_silent_goes_out_once_with_two_dispatchers(
    outbox: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production: 20 s statement timeout, 2 min lease; here 0.2 s and 1.2 s (the same ratio).

    Dispatcher A sends the message, and the write that records it falls silent; B shares the
    outbox. A's recording is tried again on a fresh connection well inside its lease, so B never
    finds the message's lease run out, and the shopper gets it once."""
    monkeypatch.setattr(database, "ENGINE_STATEMENT_TIMEOUT_SECONDS", 0.2)
    lease = timedelta(seconds=1.2)
    settings = make_settings(tmp_path, outbox_poll=timedelta(seconds=0.1))
    sender = Counting()
    async with blackhole_for(outbox) as proxy:
        direct, through = Database.open(outbox), Database.open(proxy.url_for(outbox))
        a = Dispatcher(through, settings, senders={"email": sender}, rng=random.Random(1), lease=lease)
        b = Dispatcher(direct, settings, senders={"email": sender}, rng=random.Random(2), lease=lease)
        try:
            queued = await enqueue(direct, due=datetime.now(UTC) - timedelta(seconds=1))
            proxy.cut_on(b"INSERT INTO message_attempts")  # the first statement of A's recording
            passing = asyncio.create_task(a.run_once())
            await asyncio.wait_for(proxy.triggered.wait(), 5)
            await b.start()
            started = time.monotonic()
            assert await asyncio.wait_for(passing, 10) == 1
            assert time.monotonic() - started < lease.total_seconds()
            await asyncio.sleep(lease.total_seconds() + 0.3)  # B would have found the lease run out
            await b.stop()
            assert sender.sent == {queued.id: 1}
            assert (await row(direct, queued.id)).status == "sent"
            assert [(t.ok, t.error) for t in await attempts(direct, queued.id)] == [(True, None)]
        finally:
            await a.stop()
            await through.close()
            await direct.close()
