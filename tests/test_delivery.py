"""Message states end to end: sent, delivered, failed, bounced, dead, suppressed (with reasons).

The SMS provider is a real HTTP server (``test_outbox_senders.sms_server``, answering Twilio's JSON
with a ``sid``), its delivery reports go to the real app's ``/sms/status/{id}``; email goes to a
real SMTP server. Every test runs on SQLite, and on PostgreSQL when ``CMC_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import insert, select, update

from cmc import retention
from cmc.ids import new_id
from cmc.outbox import opt_out, queue, status
from cmc.store import tables
from cmc.store.database import Database
from support import Api, make_settings
from test_outbox_dispatch import NOON, at_ny, attempts, db, db_url, dispatcher, enqueue, row
from test_outbox_senders import sms_server, smtp_server

__all__ = ["db", "db_url"]  # fixtures

KEY = b"s3cret"
"""The SMS URL's password (Twilio's auth token): what reports are signed with."""
SMS_URL = "http://AC123:s3cret@127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json"


# --------------------------------------------------------------------------- the signature (pure)


def test_the_signature_is_twilios() -> None:
    """Twilio's published vectors: one value per field, and a field repeated (distinct pairs, sorted)."""
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    form = [("CallSid", "CA1234567890ABCDE"), ("Caller", "+14158675309"), ("Digits", "1234"),
            ("From", "+14158675309"), ("To", "+18005551212")]  # fmt: skip
    assert status.signature(b"12345", url, form) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert status.verified(b"12345", url, form[::-1], "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    repeated = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert status.signature(b"12345", url, repeated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert not status.verified(b"12345", url + "&extra=1", form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not status.verified(b"12346", url, form, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not status.verified(b"12345", url, form, None)


def test_reports_are_read_as_states() -> None:
    def read(**form: str) -> Any:
        return status.read(list(form.items()))

    assert read(MessageSid="SM1", MessageStatus="delivered") == status.Report(
        "SM1", "delivered", "delivered", None
    )
    assert read(MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003").reason == "provider-30003"
    assert read(MessageSid="SM1", MessageStatus="failed").reason == "failed"
    assert read(MessageSid="SM1", MessageStatus="sent").state is None  # progress: changes nothing
    assert read(MessageSid="SM1", MessageStatus="Delivered").state == "delivered"
    assert read(MessageStatus="delivered") == {"MessageSid": ["is required"]}
    assert read(MessageSid="SM1", MessageStatus=" ") == {"MessageStatus": ["is required"]}


# --------------------------------------------------------------------------- the callback endpoint


@pytest.fixture
def reports_factory(api_factory: Callable[..., Any]) -> Callable[..., Any]:
    def start(**overrides: Any) -> Any:
        return api_factory(**{"sms_url": SMS_URL, "dispatcher": False, **overrides})

    return start


@pytest.fixture
async def api(reports_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    async with reports_factory() as api:
        yield api


async def message(
    api: Api, *, channel: str = "sms", status: str = "sent", provider_id: str | None = "SM1"
) -> str:
    """A message row as the dispatcher leaves it once the provider took it."""
    mid = new_id()
    values = {
        "id": mid, "pos_system_id": "pax", "company_id": "comp5", "location_id": "loc5",
        "transaction_id": new_id(), "rule": "r", "template_id": f"t-{channel}", "channel": channel,
        "recipient": "+14155550100", "subject": None, "body": "Thanks!", "optout_token": new_id(),
        "status": status, "attempts": 1, "next_attempt_at": NOON, "created_at": NOON, "sent_at": NOON,
        "provider_id": provider_id,
    }  # fmt: skip
    await sql(api, insert(tables.messages).values(values))
    return mid


async def sql(api: Api, statement: Any) -> Any:
    def run(conn: Any) -> Any:
        result = conn.execute(statement)
        return result.all() if result.returns_rows else None

    db = api.db()
    try:
        return await db.write(run)
    finally:
        await db.close()


async def state(api: Api, mid: str) -> tuple[str, str | None, str | None]:
    m = tables.messages
    [found] = await sql(api, select(m.c.status, m.c.reason, m.c.provider_id).where(m.c.id == mid))
    return tuple(found)  # type: ignore[return-value]


async def report(
    api: Api, mid: str, *, key: bytes = KEY, sign: bool = True, signed_url: str | None = None, **form: str
) -> httpx2.Response:
    """POST a delivery report as Twilio does: a form, signed over the URL CMC asked it to call."""
    url = signed_url or status.callback_url("http://cmc.test", mid)
    headers = {status.SIGNATURE_HEADER: status.signature(key, url, list(form.items()))} if sign else {}
    return await api.http.post(f"/sms/status/{mid}", data=form, headers=headers)


async def test_a_report_moves_a_sent_sms_to_delivered_and_nothing_moves_it_back(api: Api) -> None:
    mid = await message(api)
    answer = await report(api, mid, MessageSid="SM1", MessageStatus="delivered", AccountSid="AC123")
    assert (answer.status_code, answer.content) == (204, b"")
    assert await state(api, mid) == ("delivered", None, "SM1")
    # Twice, late, out of order: a delivered SMS stays delivered.
    for late in ("delivered", "sent", "queued", "failed", "undelivered"):
        assert (
            await report(api, mid, MessageSid="SM1", MessageStatus=late, ErrorCode="30003")
        ).status_code == 204
        assert await state(api, mid) == ("delivered", None, "SM1")


async def test_a_failure_report_keeps_the_providers_error_code(api: Api) -> None:
    mid = await message(api)
    assert (await report(api, mid, MessageSid="SM1", MessageStatus="sent")).status_code == 204
    assert await state(api, mid) == ("sent", None, "SM1")  # progress changes nothing
    await report(api, mid, MessageSid="SM1", MessageStatus="undelivered", ErrorCode="30003")
    assert await state(api, mid) == ("failed", "provider-30003", "SM1")
    await report(api, mid, MessageSid="SM1", MessageStatus="delivered")
    assert await state(api, mid) == ("failed", "provider-30003", "SM1")


async def test_unsigned_or_forged_reports_are_refused_and_change_nothing(api: Api) -> None:
    mid = await message(api)
    form = {"MessageSid": "SM1", "MessageStatus": "failed"}
    refused = [
        await report(api, mid, sign=False, **form),
        await report(api, mid, key=b"not-the-token", **form),
        await report(api, mid, signed_url=status.callback_url("http://cmc.test", "other-id"), **form),
        await report(api, mid, signed_url="https://evil.test/sms/status/" + mid, **form),
    ]
    # A signature over other fields than those sent.
    signature = status.signature(
        KEY, status.callback_url("http://cmc.test", mid), [("MessageStatus", "sent")]
    )
    refused.append(
        await api.http.post(f"/sms/status/{mid}", data=form, headers={status.SIGNATURE_HEADER: signature})
    )
    assert [r.status_code for r in refused] == [403] * 5
    assert all(r.headers["content-type"] == "application/problem+json" for r in refused)
    assert await state(api, mid) == ("sent", None, "SM1")
    # Without the signature nothing tells which messages exist.
    assert (await report(api, "no-such-message", sign=False, **form)).status_code == 403


async def test_bad_reports_are_4xx_never_500(api: Api) -> None:
    mid = await message(api)
    missing = await report(api, mid, MessageSid="SM1")
    assert missing.status_code == 400 and missing.json()["errors"] == {"MessageStatus": ["is required"]}
    url = status.callback_url("http://cmc.test", mid)
    signed = {status.SIGNATURE_HEADER: status.signature(KEY, url, [])}
    as_json = await api.http.post(f"/sms/status/{mid}", json={"MessageStatus": "delivered"}, headers=signed)
    assert as_json.status_code == 415
    form = {**signed, "Content-Type": "application/x-www-form-urlencoded"}
    assert (await api.http.post(f"/sms/status/{mid}", content=b"\xff\xfe=1", headers=form)).status_code == 400
    crowd = "&".join(f"f{n}=1" for n in range(150)).encode()
    assert (await api.http.post(f"/sms/status/{mid}", content=crowd, headers=form)).status_code == 400
    assert await state(api, mid) == ("sent", None, "SM1")


async def test_reports_about_no_sms_of_ours_are_404_and_another_sid_is_ignored(api: Api) -> None:
    assert (await report(api, new_id(), MessageSid="SM1", MessageStatus="delivered")).status_code == 404
    email = await message(api, channel="email", provider_id=None)
    assert (await report(api, email, MessageSid="SM1", MessageStatus="delivered")).status_code == 404
    mid = await message(api)
    assert (await report(api, mid, MessageSid="SM-other", MessageStatus="failed")).status_code == 204
    assert await state(api, mid) == ("sent", None, "SM1")


async def test_without_a_key_cmc_takes_no_reports(reports_factory: Callable[..., Any]) -> None:
    async with reports_factory(sms_url="http://127.0.0.1:9/send") as api:  # no password, no token
        mid = await message(api)
        assert (await report(api, mid, MessageSid="SM1", MessageStatus="delivered")).status_code == 404
        assert await state(api, mid) == ("sent", None, "SM1")
    async with reports_factory(sms_url="http://127.0.0.1:9/send", sms_auth_token="t0ken") as api:
        mid = await message(api)
        assert (
            await report(api, mid, key=b"t0ken", MessageSid="SM1", MessageStatus="delivered")
        ).status_code == 204


# --------------------------------------------------------------------------- with the dispatcher


async def test_an_sms_keeps_the_providers_id_and_asks_for_reports(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="sms")
    with sms_server(201) as sms:
        outbox = dispatcher(db, tmp_path, sms_url=sms.url("AC123:s3cret"))
        assert await outbox.run_once(NOON) == 1
        await outbox.stop()
    [request] = sms.requests
    assert request.form["StatusCallback"] == f"http://cmc.test/sms/status/{queued.id}"
    sent = await row(db, queued.id)
    assert (sent.status, sent.provider_id, sent.reason) == ("sent", "SM1", None)


async def test_without_a_key_an_sms_asks_for_no_reports(db: Database, tmp_path: Path) -> None:
    await enqueue(db, channel="sms")
    with sms_server(201) as sms:
        outbox = dispatcher(db, tmp_path, sms_url=sms.url(""))
        assert await outbox.run_once(NOON) == 1
        await outbox.stop()
    assert "StatusCallback" not in sms.requests[0].form


async def test_a_report_that_outruns_the_dispatcher_is_kept(db: Database, tmp_path: Path) -> None:
    queued = await enqueue(db, channel="sms")
    lease = timedelta(minutes=2)
    claim = await db.write(queue.claim, now=NOON, limit=10, lease=lease, max_attempts=6, base_url="")
    delivered = status.Report("SM9", "delivered", "delivered", None)
    assert await db.write(queue.report_delivery, queued.id, delivered, now=NOON) == "delivered"
    # The pass records its send afterwards: still ours, still delivered, no longer leased.
    assert await db.write(queue.mark_all_sent, claim.messages, now=NOON, provider_ids={queued.id: "SM9"}) == [
        True
    ]
    done = await row(db, queued.id)
    assert (done.status, done.provider_id, done.sent_at, done.lease_until) == ("delivered", "SM9", NOON, None)
    assert await dispatcher(db, tmp_path).run_once(NOON + lease * 2) == 0  # never sent again


async def test_a_report_after_a_timeout_stops_the_retry(db: Database, tmp_path: Path) -> None:
    """The provider took the SMS though CMC saw a failure: its report settles it, no second send."""
    queued = await enqueue(db, channel="sms")
    with sms_server(503, 201) as sms:
        outbox = dispatcher(db, tmp_path, sms_url=sms.url())
        assert await outbox.run_once(NOON) == 1
        waiting = await row(db, queued.id)
        assert waiting.status == "queued"
        report = status.Report("SM1", "delivered", "delivered", None)
        assert await db.write(queue.report_delivery, queued.id, report, now=NOON) == "delivered"
        assert await outbox.run_once(waiting.next_attempt_at) == 0
        await outbox.stop()
    assert len(sms.requests) == 1
    assert (await row(db, queued.id)).status == "delivered"


async def test_reports_racing_each_other_and_the_dispatcher_settle_once(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    """Real concurrency (two handles, as two processes have): every SMS ends in one final state."""
    ids = [(await enqueue(db, channel="sms", recipient=f"+1415555{n:04d}")).id for n in range(20)]
    other = Database.open(db_url)
    try:
        claim = await db.write(
            queue.claim, now=NOON, limit=50, lease=timedelta(minutes=2), max_attempts=6, base_url=""
        )
        assert len(claim.messages) == 20
        delivered = status.Report("SM1", "delivered", "delivered", None)
        failed = status.Report("SM1", "failed", "failed", "provider-30008")
        outcomes = await asyncio.gather(
            db.write(queue.mark_all_sent, claim.messages, now=NOON),
            *(other.write(queue.report_delivery, mid, delivered, now=NOON) for mid in ids),
            *(db.write(queue.report_delivery, mid, failed, now=NOON) for mid in ids),
        )
    finally:
        await other.close()
    assert outcomes[0] == [True] * 20  # the dispatcher still owned every message
    for n, mid in enumerate(ids):
        final = await row(db, mid)
        # The first report of each message wins; the other answers with what it found.
        assert {outcomes[1 + n], outcomes[21 + n]} == {final.status}
        assert (final.status in ("delivered", "failed"), final.lease_until) == (True, None)


# --------------------------------------------------------------------------- email, dead and suppressed


async def test_email_states_sent_bounced_and_dead(db: Database, tmp_path: Path) -> None:
    accepted, refused, busy = await enqueue(db), await enqueue(db), await enqueue(db)
    with smtp_server() as inbox:
        assert await dispatcher(db, tmp_path, smtp_url=inbox.url).run_once(NOON) == 3
    assert {(await row(db, m.id)).status for m in (accepted, refused, busy)} == {"sent"}

    bounced = await enqueue(db)
    with smtp_server(rcpt_reply="550 5.1.1 no such user") as inbox:
        assert await dispatcher(db, tmp_path, smtp_url=inbox.url).run_once(NOON) == 1
        assert await dispatcher(db, tmp_path, smtp_url=inbox.url).run_once(NOON + timedelta(days=1)) == 0
    gone = await row(db, bounced.id)
    assert (gone.status, gone.reason, gone.attempts) == ("bounced", "smtp-550", 1)
    assert "no such user" in gone.last_error

    dead = await enqueue(db)
    now = NOON
    with smtp_server(data_reply="451 4.3.0 try later") as inbox:
        outbox = dispatcher(db, tmp_path, smtp_url=inbox.url, outbox_max_attempts=2)
        assert await outbox.run_once(now) == 1
        assert await outbox.run_once((await row(db, dead.id)).next_attempt_at) == 1
    final = await row(db, dead.id)
    assert (final.status, final.reason, final.attempts) == ("dead", "smtp-451", 2)


async def test_dead_and_suppressed_say_why(db: Database, tmp_path: Path) -> None:
    no_channel = await enqueue(db, channel="fax", recipient="+14155550100")
    opted = await enqueue(db)
    await db.write(opt_out, opted.token, now=NOON)
    # An SMS whose worker was down all evening: at 22:00 the next moment allowed is 08:00, 24 hours
    # after its sale at 08:00: suppressed. One sold at 20:00 waits (12 hours).
    stale = await enqueue(db, channel="sms", due=at_ny(2026, 6, 15, 8, 0), recipient="+14155550101")
    fresh = await enqueue(db, channel="sms", due=at_ny(2026, 6, 15, 20, 0), recipient="+14155550102")
    assert await dispatcher(db, tmp_path).run_once(at_ny(2026, 6, 15, 22, 0)) == 4
    assert [((r := await row(db, m.id)).status, r.reason) for m in (no_channel, opted, stale, fresh)] == [
        ("dead", "no-channel"),
        ("suppressed", "opted-out"),
        ("suppressed", "quiet-hours"),
        ("queued", None),
    ]
    assert await attempts(db, stale.id) == []  # suppressed, never tried

    # A retry quiet hours would push more than 12 hours past the sale is suppressed too.
    retried = await enqueue(db, channel="sms", due=at_ny(2026, 6, 15, 20, 59, 59), recipient="+14155550103")
    m = tables.messages
    await db.write(
        lambda conn: conn.execute(
            update(m).where(m.c.id == retried.id).values(created_at=at_ny(2026, 6, 15, 19, 0))
        )
    )
    with sms_server(503) as sms:
        outbox = dispatcher(db, tmp_path, sms_url=sms.url())
        assert await outbox.run_once(at_ny(2026, 6, 15, 20, 59, 59)) == 1
        await outbox.stop()
    late = await row(db, retried.id)
    assert (late.status, late.reason, late.attempts) == ("suppressed", "quiet-hours", 1)


async def test_a_lost_lease_that_used_the_last_attempt_is_dead_with_its_reason(
    db: Database, tmp_path: Path
) -> None:
    queued = await enqueue(db)
    lease = timedelta(minutes=2)
    await db.write(queue.claim, now=NOON, limit=10, lease=lease, max_attempts=1, base_url="")
    assert await dispatcher(db, tmp_path, outbox_max_attempts=1).run_once(NOON + lease) == 1
    dead = await row(db, queued.id)
    assert (dead.status, dead.reason, dead.last_error) == ("dead", "lease-lost", queue.LEASE_LOST)


def test_the_callback_key_comes_from_the_token_or_the_sms_urls_password(tmp_path: Path) -> None:
    assert make_settings(tmp_path).sms_callback_key is None
    assert make_settings(tmp_path, sms_url=SMS_URL).sms_callback_key == KEY
    assert make_settings(tmp_path, sms_url="https://AC1:p%40ss@sms.test/send").sms_callback_key == b"p@ss"
    assert make_settings(tmp_path, sms_url=SMS_URL, sms_auth_token="other").sms_callback_key == b"other"
    assert make_settings(tmp_path, sms_url="https://sms.test/send").sms_callback_key is None
    assert make_settings(tmp_path, sms_auth_token="orphan").sms_callback_key is None  # no SMS, no reports


async def test_prune_takes_finished_messages_of_every_end_state_and_old_scans(db: Database) -> None:
    m, s = tables.messages, tables.scans
    done = ("sent", "delivered", "failed", "bounced", "dead", "suppressed")
    ids = {}
    for state in (*done, "queued", "sending"):
        queued = await enqueue(db, due=NOON - timedelta(days=40))
        ids[state] = queued.id
        await db.write(
            lambda conn, mid=queued.id, st=state: conn.execute(
                update(m).where(m.c.id == mid).values(status=st)
            )
        )
    fresh = await enqueue(db)
    scan = {"pos_system_id": "pax", "company_id": "comp1", "rule": "r", "code": "abc",
            "location_id": "loc-ny", "terminal_id": "t1", "agent": "Mobile Safari", "bot": False}  # fmt: skip
    await db.write(
        lambda conn: conn.execute(
            insert(s), [{**scan, "scanned_at": NOON - timedelta(days=d)} for d in (40, 35, 1)]
        )
    )
    report = await retention.prune(db, before=NOON - timedelta(days=30), batch=2)
    assert (report.deleted["messages"], report.deleted["scans"]) == (len(done), 2)
    left = await db.read(lambda conn: set(conn.execute(select(m.c.id)).scalars()))
    assert left == {ids["queued"], ids["sending"], fresh.id}
    assert await db.read(lambda conn: list(conn.execute(select(s.c.scanned_at)).scalars())) == [
        NOON - timedelta(days=1)
    ]
