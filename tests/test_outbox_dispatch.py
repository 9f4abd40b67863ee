"""The dispatcher on a real migrated database, sending to real SMTP and HTTP servers.

Every test runs on SQLite, and on PostgreSQL too when ``CMC_TEST_POSTGRES_URL`` is set. Time is
injected: each pass gets its ``now``.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, insert, make_url, select, text, update

from cmc import logs
from cmc.config import Settings
from cmc.errors import StoreUnavailable
from cmc.ids import new_id
from cmc.merchant import versions
from cmc.outbox import Dispatcher, is_opted_out, opt_out, queue, run_worker
from cmc.store import migrate, tables
from cmc.store.database import Database
from support import make_settings
from test_outbox_senders import basic, sms_server, smtp_server

NY = ZoneInfo("America/New_York")
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=NY).astimezone(UTC)  # 16:00 UTC, outside quiet hours


def at_ny(y: int, mo: int, d: int, h: int, mi: int, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=NY).astimezone(UTC)


@pytest.fixture(autouse=True)
def _log_to_this_tests_stderr() -> None:
    """Earlier tests may have pointed structlog at a stream pytest has closed since."""
    logs.configure("warning")


# --- a real database with one POS system, two companies, a New York location each -----------


POSTGRES = os.environ.get("CMC_TEST_POSTGRES_URL")


def test_postgres_is_covered() -> None:
    """One visible skip line instead of one per test when PostgreSQL is not configured."""
    if not POSTGRES:
        pytest.skip("PostgreSQL: set CMC_TEST_POSTGRES_URL to run the outbox tests on it too")


@pytest.fixture(params=["sqlite", "postgresql"] if POSTGRES else ["sqlite"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/cmc.db"
        return
    assert POSTGRES
    import asyncpg  # type: ignore[import-untyped]

    url = make_url(POSTGRES)
    name = f"cmc_outbox_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def seed_registry(conn: Connection) -> None:
    conn.execute(insert(tables.pos_systems).values(id="pax", name="PAX", status="Accepted", settings={}))
    for company, location in [("comp1", "loc-ny"), ("comp2", "loc-ny2")]:
        conn.execute(insert(tables.companies).values(pos_system_id="pax", id=company, name=company))
        if company == "comp1":  # an active marketing version with a look: the email wears it
            look = {"branding": {"name": "Coffee Co", "colors": {"primary": "#aa3300"}}}
            number = versions.create(
                conn, "pax", company, look, source="cli", created_by="test", note=None, now=NOON
            )
            versions.move_active(conn, "pax", company, to=number, expected=None, now=NOON)
        conn.execute(
            insert(tables.locations).values(
                pos_system_id="pax",
                id=location,
                company_id=company,
                name="Manhattan",
                timezone="America/New_York",
                country="US",
                quiet_hours="21:00-08:00",
            )
        )


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database.open(db_url)
    await asyncio.to_thread(migrate.upgrade, database)
    await database.write(seed_registry)
    yield database
    await database.close()


@dataclass(frozen=True)
class Queued:
    id: str
    token: str


async def enqueue(
    db: Database,
    *,
    channel: str = "email",
    recipient: str | None = None,
    company: str = "comp1",
    due: datetime = NOON,
    body: str = "Hi Ada, here it is: http://cmc.test/s/abc",
) -> Queued:
    """Insert a queued message row exactly as marketing does, in its own transaction."""
    message = Queued(new_id(), secrets.token_urlsafe(24))
    values = {
        "id": message.id,
        "pos_system_id": "pax",
        "company_id": company,
        "location_id": "loc-ny" if company == "comp1" else "loc-ny2",
        "transaction_id": new_id(),
        "rule": "mid-basket coupon",
        "template_id": f"thanks-{channel}",
        "channel": channel,
        "recipient": recipient or ("ada@example.com" if channel == "email" else "+14155550100"),
        "subject": "Your coupon" if channel == "email" else None,
        "body": f"{body}\n\nNo more messages: http://cmc.test/u/{message.token}",
        "optout_token": message.token,
        "status": "queued",
        "attempts": 0,
        "next_attempt_at": due,
        "created_at": due,
    }
    await db.write(lambda conn: conn.execute(insert(tables.messages).values(values)))
    return message


async def row(db: Database, message_id: str) -> Any:
    m = tables.messages
    return await db.read(lambda conn: conn.execute(select(m).where(m.c.id == message_id)).one())


async def attempts(db: Database, message_id: str) -> list[Any]:
    a = tables.message_attempts
    query = select(a).where(a.c.message_id == message_id).order_by(a.c.id)
    return await db.read(lambda conn: list(conn.execute(query)))


def dispatcher(db: Database, tmp_path: Path, **overrides: Any) -> Dispatcher:
    settings: Settings = make_settings(tmp_path, **overrides)
    return Dispatcher(db, settings, rng=random.Random(1))


# --- delivery ---------------------------------------------------------------------------------


async def test_email_is_delivered_over_smtp(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db)
    with smtp_server() as inbox:
        outbox = dispatcher(db, tmp_path, smtp_url=inbox.url, smtp_from="Coffee Co <shop@example.com>")
        assert await outbox.run_once(NOON) == 1
        assert await outbox.run_once(NOON) == 0
        await outbox.stop()
    [mail] = inbox.received
    assert (mail.mail_from, mail.rcpt_tos) == ("shop@example.com", ["ada@example.com"])
    assert mail.message["From"] == "Coffee Co <shop@example.com>"
    assert mail.message["Subject"] == "Your coupon"
    assert mail.message["List-Unsubscribe"] == f"<http://cmc.test/u/{queued.token}>"
    assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain, html = mail.message.get_body(("plain",)), mail.message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip() == (
        f"Hi Ada, here it is: http://cmc.test/s/abc\n\nNo more messages: http://cmc.test/u/{queued.token}"
    )
    # The HTML part wears the company's branding as it is when the message goes out.
    page = html.get_content()
    assert "Coffee Co" in page and "#aa3300" in page
    assert '<a href="http://cmc.test/s/abc"' in page and f'<a href="http://cmc.test/u/{queued.token}"' in page
    sent = await row(db, queued.id)
    assert (sent.status, sent.attempts, sent.sent_at, sent.lease_until) == ("sent", 1, NOON, None)
    [attempt] = await attempts(db, queued.id)
    assert (attempt.ok, attempt.error, attempt.attempted_at) == (True, None, NOON)


async def test_sms_is_delivered_to_the_http_api(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="sms", body="Thanks Ada! Your coupon: http://cmc.test/s/abc")
    with sms_server(201) as api:
        outbox = dispatcher(db, tmp_path, sms_url=api.url("AC123:s3cret"), sms_from="+15550001111")
        assert await outbox.run_once(NOON) == 1
        await outbox.stop()
    [request] = api.requests
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.authorization == basic("AC123:s3cret")
    assert request.form["To"] == "+14155550100"
    assert request.form["From"] == "+15550001111"
    assert request.form["Body"].startswith("Thanks Ada! Your coupon: http://cmc.test/s/abc")
    assert (await row(db, queued.id)).status == "sent"


async def test_without_a_provider_the_log_sender_counts_as_sent(db: Database, tmp_path: Path) -> None:
    email, sms = await enqueue(db), await enqueue(db, channel="sms")
    outbox = dispatcher(db, tmp_path)
    assert await outbox.run_once(NOON) == 2
    assert {(await row(db, m.id)).status for m in (email, sms)} == {"sent"}


async def test_unknown_channel_is_dead_at_once(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="fax", recipient="+14155550100")
    assert await dispatcher(db, tmp_path).run_once(NOON) == 1
    dead = await row(db, queued.id)
    assert (dead.status, dead.attempts) == ("dead", 1)
    assert "no sender for channel 'fax'" in dead.last_error


# --- failures and retries -----------------------------------------------------------------------


async def test_failing_smtp_server_retries_with_growing_delays_then_dead(
    db: Database, tmp_path: Path
) -> None:
    queued = await enqueue(db)
    now, delays = NOON, []
    with smtp_server(data_reply="451 4.3.0 mailbox busy, try later") as inbox:
        outbox = dispatcher(db, tmp_path, smtp_url=inbox.url, outbox_max_attempts=4)
        for attempt in range(1, 4):
            assert await outbox.run_once(now) == 1
            waiting = await row(db, queued.id)
            assert (waiting.status, waiting.attempts) == ("queued", attempt)
            assert "451" in waiting.last_error
            assert await outbox.run_once(waiting.next_attempt_at - timedelta(milliseconds=1)) == 0  # not yet
            delays.append(waiting.next_attempt_at - now)
            now = waiting.next_attempt_at
        assert await outbox.run_once(now) == 1
        assert await outbox.run_once(now + timedelta(days=1)) == 0
        assert inbox.data_calls == 4
    assert delays[0] < delays[1] < delays[2]
    assert timedelta(seconds=1.6) <= delays[0] <= timedelta(seconds=2.4)  # CMC_OUTBOX_BACKOFF ± jitter
    dead = await row(db, queued.id)
    assert (dead.status, dead.attempts, dead.sent_at) == ("dead", 4, None)
    tries = await attempts(db, queued.id)
    assert [t.ok for t in tries] == [False] * 4
    assert all("451" in t.error for t in tries)
    assert tries[-1].attempted_at == now


async def test_sms_temporary_failure_is_retried_then_sent(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="sms")
    with sms_server(503, 201) as api:
        outbox = dispatcher(db, tmp_path, sms_url=api.url())
        assert await outbox.run_once(NOON) == 1
        retry_at = (await row(db, queued.id)).next_attempt_at
        assert await outbox.run_once(retry_at) == 1
        await outbox.stop()
    assert len(api.requests) == 2
    sent = await row(db, queued.id)
    assert (sent.status, sent.attempts, sent.sent_at) == ("sent", 2, retry_at)
    assert [t.ok for t in await attempts(db, queued.id)] == [False, True]


async def test_sms_permanent_failure_is_dead_at_once(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="sms")
    with sms_server(400) as api:
        outbox = dispatcher(db, tmp_path, sms_url=api.url())
        assert await outbox.run_once(NOON) == 1
        assert await outbox.run_once(NOON + timedelta(days=1)) == 0
        await outbox.stop()
    assert len(api.requests) == 1
    dead = await row(db, queued.id)
    assert (dead.status, dead.attempts) == ("dead", 1)
    [attempt] = await attempts(db, queued.id)
    assert not attempt.ok
    assert "400" in attempt.error


# --- opt-out ------------------------------------------------------------------------------------


async def test_opted_out_recipient_is_suppressed_not_sent(db: Database, tmp_path: Path) -> None:
    first = await enqueue(db)
    assert await db.write(opt_out, first.token, now=NOON) is True
    assert await db.write(opt_out, first.token, now=NOON) is True  # visiting twice is fine
    assert await db.write(opt_out, "no-such-token", now=NOON) is False
    who = {"pos_system_id": "pax", "channel": "email", "recipient": "ada@example.com"}
    assert await db.read(is_opted_out, company_id="comp1", **who)
    assert not await db.read(is_opted_out, company_id="comp2", **who)
    assert not await db.read(is_opted_out, company_id="comp1", **{**who, "channel": "sms"})

    later = await enqueue(db)
    other_merchant = await enqueue(db, company="comp2")
    with smtp_server() as inbox:
        outbox = dispatcher(db, tmp_path, smtp_url=inbox.url)
        assert await outbox.run_once(NOON) == 3
    assert [mail.message["Message-ID"].split("@")[0].strip("<") for mail in inbox.received] == [
        other_merchant.id
    ]
    assert (await row(db, first.id)).status == "suppressed"
    assert (await row(db, later.id)).status == "suppressed"
    assert await attempts(db, later.id) == []


# --- quiet hours --------------------------------------------------------------------------------


async def test_sms_due_in_quiet_hours_waits_for_their_end(db: Database, tmp_path: Path) -> None:
    evening = at_ny(2026, 6, 15, 22, 0)
    sms = await enqueue(db, channel="sms", due=evening)
    email = await enqueue(db, due=evening)
    with sms_server(201) as api:
        outbox = dispatcher(db, tmp_path, sms_url=api.url())
        assert await outbox.run_once(evening) == 2  # the email goes, the SMS is put off
        assert api.requests == []
        waiting = await row(db, sms.id)
        assert (waiting.status, waiting.attempts) == ("queued", 0)
        assert waiting.next_attempt_at == at_ny(2026, 6, 16, 8, 0)
        assert await outbox.run_once(at_ny(2026, 6, 16, 7, 59, 59)) == 0
        assert api.requests == []
        assert await outbox.run_once(at_ny(2026, 6, 16, 8, 0)) == 1
        await outbox.stop()
    assert len(api.requests) == 1
    assert (await row(db, sms.id)).sent_at == at_ny(2026, 6, 16, 8, 0)
    assert (await row(db, email.id)).sent_at == evening


async def test_sms_retry_is_pushed_past_quiet_hours(db: Database, tmp_path: Path) -> None:
    almost_nine = at_ny(2026, 6, 15, 20, 59, 59)
    queued = await enqueue(db, channel="sms", due=almost_nine)
    with sms_server(503, 201) as api:
        outbox = dispatcher(db, tmp_path, sms_url=api.url())
        assert await outbox.run_once(almost_nine) == 1
        await outbox.stop()
    assert (await row(db, queued.id)).next_attempt_at == at_ny(2026, 6, 16, 8, 0)


# --- crashed workers and concurrency --------------------------------------------------------------


async def test_crashed_workers_lease_expires_and_the_message_is_claimed_again(
    db: Database, tmp_path: Path
) -> None:
    queued = await enqueue(db)
    lease = timedelta(minutes=2)
    # A worker claims the message and dies before settling it.
    crashed = await db.write(queue.claim, now=NOON, limit=10, lease=lease, max_attempts=6, base_url="")
    assert [m.id for m in crashed.messages] == [queued.id]
    assert (await row(db, queued.id)).status == "sending"
    with smtp_server() as inbox:
        outbox = dispatcher(db, tmp_path, smtp_url=inbox.url)
        assert await outbox.run_once(NOON + lease - timedelta(seconds=1)) == 0  # still leased
        assert await outbox.run_once(NOON + lease) == 1
    assert len(inbox.received) == 1
    sent = await row(db, queued.id)
    assert (sent.status, sent.attempts) == ("sent", 2)
    tries = await attempts(db, queued.id)
    assert [(t.ok, t.error) for t in tries] == [(False, queue.LEASE_LOST), (True, None)]
    # The first worker coming back late cannot overwrite the new owner's outcome.
    assert (
        await db.write(queue.mark_failed, crashed.messages[0], now=NOON, error="late", retry_at=None) is False
    )
    assert (await row(db, queued.id)).status == "sent"


async def test_message_that_keeps_killing_its_worker_ends_dead(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db)
    lease, now = timedelta(minutes=2), NOON
    for _ in range(3):
        claim = await db.write(queue.claim, now=now, limit=10, lease=lease, max_attempts=3, base_url="")
        assert len(claim.messages) == 1
        now += lease
    assert await dispatcher(db, tmp_path, outbox_max_attempts=3).run_once(now) == 1
    dead = await row(db, queued.id)
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, queue.LEASE_LOST)


async def test_two_dispatchers_never_send_one_message_twice(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    queued = {(await enqueue(db, recipient=f"c{n}@example.com")).id for n in range(40)}
    other = Database.open(db_url)  # a second handle: its own connections, as another process has
    try:
        with smtp_server() as inbox:
            a = dispatcher(db, tmp_path, smtp_url=inbox.url)
            b = dispatcher(other, tmp_path, smtp_url=inbox.url)
            a.batch = b.batch = 4

            async def drain(outbox: Dispatcher) -> int:
                total = 0
                while handled := await outbox.run_once(NOON):
                    total += handled
                return total

            counts = await asyncio.gather(drain(a), drain(b), drain(a), drain(b))
    finally:
        await other.close()
    sent_ids = [mail.message["Message-ID"].split("@")[0].strip("<") for mail in inbox.received]
    assert sorted(sent_ids) == sorted(queued)  # every message exactly once
    assert sum(counts) == 40
    m = tables.messages
    statuses = await db.read(lambda conn: set(conn.execute(select(m.c.status)).scalars()))
    assert statuses == {"sent"}


# --- the long-running loop ------------------------------------------------------------------------


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_start_polls_and_wake_sends_at_once(db: Database, tmp_path: Path) -> None:
    with smtp_server() as inbox:
        outbox = Dispatcher(
            db, make_settings(tmp_path, smtp_url=inbox.url, outbox_poll=timedelta(seconds=30))
        )
        await outbox.start()
        try:
            await asyncio.sleep(0.05)  # the first pass found nothing; the next poll is 30 s away
            await enqueue(db, due=datetime.now(UTC))
            outbox.wake()
            await wait_for(lambda: len(inbox.received) == 1)
        finally:
            await outbox.stop()


async def test_run_worker_sends_until_stopped(db: Database, db_url: str, tmp_path: Path) -> None:
    queued = await enqueue(db, due=datetime.now(UTC))
    with smtp_server() as inbox:
        settings = make_settings(
            tmp_path, database_url=db_url, smtp_url=inbox.url, outbox_poll=timedelta(milliseconds=50)
        )
        stop = asyncio.Event()
        worker = asyncio.create_task(run_worker(settings, stop=stop))
        await wait_for(lambda: len(inbox.received) == 1)
        stop.set()
        await asyncio.wait_for(worker, 10)
    assert (await row(db, queued.id)).status == "sent"


async def test_stale_rows_are_left_alone(db: Database, tmp_path: Path) -> None:
    """A row another status owns (sent, dead, suppressed) is never claimed, whatever its times say."""
    queued = await enqueue(db)
    m = tables.messages
    for status in ("sent", "dead", "suppressed"):
        await db.write(
            lambda conn, s=status: conn.execute(update(m).where(m.c.id == queued.id).values(status=s))
        )
        assert await dispatcher(db, tmp_path).run_once(NOON + timedelta(days=1)) == 0


# --- a lost connection while recording a pass's outcome ----------------------------------------------


class Flaky(Database):
    """A real database whose ``write`` of ``fn`` fails the next ``times`` times, every other call as usual.

    Refused (the default): StoreUnavailable before the write reaches the store, as when no connection
    can be had. ``cut`` (PostgreSQL): the write runs, then its connection's backend is terminated
    before the commit, so the store loses the connection and the transaction with it. ``answer
    lost``: the write commits, and then the connection is lost before its answer comes back.
    """

    def __init__(self, db: Database, fn: Callable[..., Any], *, times: int = 1, how: str = "refused") -> None:
        self._db, self._fn, self._how = db, fn, how
        self.dialect = db.dialect
        self.left = times

    async def write(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if fn is not self._fn or not self.left:
            return await self._db.write(fn, *args, **kwargs)
        self.left -= 1
        if self._how == "refused":
            raise StoreUnavailable(code="08006")
        if self._how == "answer lost":
            await self._db.write(fn, *args, **kwargs)
            raise StoreUnavailable(code="08006")

        def cut_before_commit(conn: Connection, *args: Any, **kwargs: Any) -> Any:
            result = fn(conn, *args, **kwargs)
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return result

        return await self._db.write(cut_before_commit, *args, **kwargs)

    async def transact(self, unit: Any, /, *args: Any, **kwargs: Any) -> Any:
        return await self._db.transact(unit, *args, **kwargs)

    async def query(self, unit: Any, /, *args: Any, **kwargs: Any) -> Any:
        return await self._db.query(unit, *args, **kwargs)

    async def read(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await self._db.read(fn, *args, **kwargs)

    def run_sync(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return self._db.run_sync(fn, *args, **kwargs)

    async def close(self) -> None:
        await self._db.close()


def sent_ids(inbox: Any) -> list[str]:
    return sorted(mail.message["Message-ID"].split("@")[0].strip("<") for mail in inbox.received)


@pytest.mark.parametrize("how", ["refused", "cut", "answer lost"])
async def test_a_lost_connection_while_recording_the_sent_messages_sends_none_twice(
    db: Database, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if how == "cut" and db.dialect != "postgresql":
        pytest.skip("terminating the write's own backend is PostgreSQL's")
    queued = sorted([(await enqueue(db, recipient=f"c{n}@example.com")).id for n in range(10)])
    flaky = Flaky(db, queue.mark_all_sent, how=how)
    with smtp_server() as inbox:
        outbox = dispatcher(flaky, tmp_path, smtp_url=inbox.url)
        assert await outbox.run_once(NOON) == 10
        # Had the pass left them in `sending`, they would be claimed and sent again here.
        assert await outbox.run_once(NOON + outbox.lease) == 0
        await outbox.stop()
    assert flaky.left == 0  # the first recording did fail
    assert sent_ids(inbox) == queued  # each message exactly once
    for message_id in queued:
        sent = await row(db, message_id)
        assert (sent.status, sent.attempts, sent.sent_at, sent.lease_until) == ("sent", 1, NOON, None)
        assert [(t.ok, t.error) for t in await attempts(db, message_id)] == [(True, None)]
    assert "lease lost" not in capsys.readouterr().err  # the retry found its own work done


@pytest.mark.parametrize("how", ["refused", "answer lost"])
async def test_a_lost_connection_while_recording_a_failure_is_retried(
    db: Database, tmp_path: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fax = await enqueue(db, channel="fax", recipient="+14155550100")
    flaky = Flaky(db, queue.mark_failed, how=how)
    assert await dispatcher(flaky, tmp_path).run_once(NOON) == 1
    assert flaky.left == 0
    dead = await row(db, fax.id)
    assert (dead.status, dead.reason, dead.lease_until) == ("dead", "no-channel", None)
    assert [t.ok for t in await attempts(db, fax.id)] == [False]
    assert "lease lost" not in capsys.readouterr().err


async def test_a_failure_that_cannot_be_recorded_does_not_keep_the_sent_ones_from_being_recorded(
    db: Database, tmp_path: Path
) -> None:
    emails = sorted([(await enqueue(db, recipient=f"c{n}@example.com")).id for n in range(3)])
    fax = await enqueue(db, channel="fax", recipient="+14155550100")  # fails for good: no sender
    flaky = Flaky(db, queue.mark_failed, times=1_000)  # the store refuses it for the whole pass
    with smtp_server() as inbox:
        outbox = dispatcher(flaky, tmp_path, smtp_url=inbox.url)
        with pytest.raises(StoreUnavailable):  # the pass still says it failed
            await outbox.run_once(NOON)
        for message_id in emails:
            assert (await row(db, message_id)).status == "sent"
        # The failure stays leased, and is settled once the lease runs out; the emails stay sent.
        assert (await row(db, fax.id)).status == "sending"
        flaky.left = 0
        assert await outbox.run_once(NOON + outbox.lease) == 1
        await outbox.stop()
    assert sent_ids(inbox) == emails
    assert (await row(db, fax.id)).status == "dead"
