"""What analytics needs, recorded through the real app: scans, holdouts, suppressed messages.

The registry is tests/recording.yaml: ``coupon with holdout`` holds out 50% of its customers and
otherwise shows a QR and a CFS template and sends an SMS and an email.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cmc import analytics, cli, holdout, links
from cmc.outbox import Dispatcher, status
from cmc.store import migrate, tables
from cmc.store.database import Database
from support import Api, ManualClock, apply_registry, make_settings, seed_transaction
from test_outbox_senders import sms_server

REGISTRY = Path(__file__).with_name("recording.yaml")
RULE = "coupon with holdout"
LA = ZoneInfo("America/Los_Angeles")
NOON = datetime(2026, 6, 15, 12, 0, tzinfo=LA).astimezone(UTC)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture
def recording_factory(api_factory: Callable[..., Any]) -> Callable[..., Any]:
    """The app on tests/recording.yaml, its clock in the test's hands, no dispatcher of its own."""

    def start(clock: ManualClock, **overrides: Any) -> Any:
        return api_factory(clock=clock, registry=REGISTRY, dispatcher=False, **overrides)

    return start


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOON)


@pytest.fixture
async def api(recording_factory: Callable[..., Any], clock: ManualClock) -> AsyncIterator[Api]:
    async with recording_factory(clock) as api:
        yield api


def customer(n: int, **changes: Any) -> dict[str, Any]:
    """A sale of customer ``n`` (own POS id, email and phone; no loyalty card) at loc5."""
    person = {
        "id": f"cust-{n}",
        "firstName": f"Person{n}",
        "contacts": [{"email": f"p{n}@example.com", "phone": f"(415) 555-{n:04d}"}],
    }
    return seed_transaction(customer=person, loyalty=None, **changes)


async def rows(api: Api, query: Any) -> list[Any]:
    db = api.db()
    try:
        return await db.read(lambda conn: list(conn.execute(query)))
    finally:
        await db.close()


async def sale(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.tender(body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


async def salt(api: Api) -> bytes:
    """comp5's holdout salt, from the service secret the app made on its first start."""
    db = api.db()
    try:
        return holdout.company_salt(await db.read(holdout.stored_secret), "pax", "comp5")
    finally:
        await db.close()


# --------------------------------------------------------------------------- scans


async def test_a_scan_is_recorded_with_rule_terminal_and_who_scanned(api: Api, clock: ManualClock) -> None:
    # A customer in the treatment (the rule's holdout shows no QR to scan).
    for n in range(40):
        data = await sale(api, customer(n, terminalId="term6"))
        if data["qrCodeWidget"]:
            break
    code = data["qrCodeWidget"]["shortLinkUrl"].rsplit("/", 1)[1]
    [link] = await rows(api, select(tables.short_links).where(tables.short_links.c.code == code))
    assert (link.rule, link.terminal_id) == (RULE, "term6")

    visits = [{"User-Agent": IPHONE}, {"User-Agent": GOOGLEBOT}, {"User-Agent": ""}]
    for headers in visits:
        clock.advance(minutes=5)
        answer = await api.http.get(f"/s/{code}", headers=headers)
        assert answer.status_code == 302
        assert answer.headers["location"] == f"https://example.com/coupon?c={code}"
    assert (await api.http.get("/s/no-such-code")).status_code == 404

    s = tables.scans
    scans = await rows(api, select(s).order_by(s.c.id))
    assert [(r.code, r.rule, r.pos_system_id, r.company_id, r.location_id, r.terminal_id) for r in scans] == [
        (code, RULE, "pax", "comp5", "loc5", "term6")
    ] * 3
    assert [(r.agent, r.bot) for r in scans] == [
        ("Mobile Safari", False),
        ("Googlebot", True),
        ("Other", True),
    ]
    assert [r.scanned_at for r in scans] == [NOON + timedelta(minutes=5 * n) for n in (1, 2, 3)]
    [link] = await rows(api, select(tables.short_links).where(tables.short_links.c.code == code))
    assert (link.scans, link.last_scan_at) == (3, NOON + timedelta(minutes=15))

    db = api.db()
    try:
        window = {
            "pos_system_id": "pax",
            "company_id": "comp5",
            "since": NOON,
            "until": NOON + timedelta(days=1),
        }
        counted = await db.read(links.scan_counts, **window)
        activity = await db.read(analytics.rule_activity, **window)
    finally:
        await db.close()
    assert counted == [links.ScanCount(RULE, people=1, bots=2)]
    assert (activity[RULE].scans, activity[RULE].bot_scans) == (1, 2)


@pytest.mark.parametrize(
    ("user_agent", "family", "bot"),
    [
        (IPHONE, "Mobile Safari", False),
        ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/120.0.0.0 Mobile Safari/537.36", "Chrome Mobile", False),
        (GOOGLEBOT, "Googlebot", True),
        ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "FacebookBot", True),
        ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slackbot-LinkExpanding", True),
        ("", "Other", True),
        (None, "Other", True),
    ],
)  # fmt: skip
def test_user_agents_are_classified_by_ua_parser(user_agent: str | None, family: str, bot: bool) -> None:
    assert links.agent_of(user_agent) == links.Agent(family, bot)


# --------------------------------------------------------------------------- holdout


async def test_held_out_customers_see_nothing_and_get_nothing(api: Api, clock: ManualClock) -> None:
    answers = {n: await sale(api, customer(n)) for n in range(30)}
    pids = {n: data["profile"]["id"] for n, data in answers.items()}
    key = await salt(api)
    variant = {n: holdout.variant_of(key, RULE, pid, 50) for n, pid in pids.items()}
    held = {n for n, v in variant.items() if v == "holdout"}
    assert 0 < len(held) < 30  # 2^-29 either way

    f, m, c = tables.rule_firings, tables.messages, tables.cfs_events
    firings = {r.profile_id: r for r in await rows(api, select(f))}
    messages = await rows(api, select(m))
    link_sales = {r.code: r.transaction_id for r in await rows(api, select(tables.short_links))}
    links_made = set(link_sales.values())
    # A screen event names no sale (the screen shows no more than it must): its QR's link does.
    screen_events = await rows(api, select(c))
    events = {link_sales[r.payload["code"]] for r in screen_events if r.payload.get("code")}
    # The held-out's screens show what a sale nothing fired on shows: the thank-you, no QR.
    plain = [r.payload for r in screen_events if not r.payload.get("code")]
    assert len(events) == 30 - len(held) and len(plain) == len(held)
    assert all(set(payload) == {"firstName"} for payload in plain)
    for n, data in answers.items():
        firing = firings[pids[n]]
        assert (firing.rule, firing.transaction_id, firing.variant) == (RULE, data["id"], variant[n])
        own = {r.channel: r for r in messages if r.transaction_id == data["id"]}
        assert set(own) == {"sms", "email"}
        if n in held:
            assert (data["qrCodeWidget"], data["cfsTemplate"], data["notificationMessageId"]) == (
                None,
                None,
                None,
            )
            assert data["effects"] == []
            assert data["id"] not in links_made and data["id"] not in events
            assert {(r.status, r.reason, r.rule) for r in own.values()} == {("suppressed", "holdout", RULE)}
            assert "Person" in own["sms"].body and "/s/" not in own["sms"].body  # as written, no link
        else:
            assert data["qrCodeWidget"]["widgetId"] == 1 and data["cfsTemplate"]["accountTemplateId"] == 7
            assert data["notificationMessageId"] == own["sms"].id
            assert data["id"] in links_made and data["id"] in events
            assert {(r.status, r.reason) for r in own.values()} == {("queued", None)}

    # The dispatcher sends the treatment's messages and never touches the holdout's.
    outbox = Dispatcher(api.db(), api.settings, clock=clock)
    assert await outbox.run_once() == 2 * (30 - len(held))
    assert await outbox.run_once(NOON + timedelta(days=30)) == 0
    await outbox.stop()
    after = {r.id: r for r in await rows(api, select(m))}
    attempts = {r.message_id for r in await rows(api, select(tables.message_attempts))}
    for r in messages:
        if r.reason == "holdout":
            assert (after[r.id].status, after[r.id].attempts) == ("suppressed", 0) and r.id not in attempts
        else:
            assert after[r.id].status == "sent"

    # Stable: the same customers land in the same arms at their next sale.
    clock.advance(days=1)
    api._tokens.clear()  # the day-old token has expired
    for n in sorted(held)[:3] + sorted(set(range(30)) - held)[:3]:
        again = await sale(api, customer(n))
        assert (again["qrCodeWidget"] is None) == (n in held)
    db = api.db()
    try:
        window = {
            "pos_system_id": "pax",
            "company_id": "comp5",
            "since": NOON,
            "until": NOON + timedelta(days=2),
        }
        activity = (await db.read(analytics.rule_activity, **window))[RULE]
    finally:
        await db.close()
    assert activity.firings == {"treatment": 30 - len(held) + 3, "holdout": len(held) + 3}
    assert activity.customers == {"treatment": 30 - len(held), "holdout": len(held)}
    assert activity.messages["suppressed:holdout"] == 2 * (len(held) + 3)


async def test_an_anonymous_sale_is_never_held_out(api: Api) -> None:
    for _ in range(8):
        data = await sale(api, seed_transaction(customer=None, loyalty=None))
        assert data["profile"] is None
        assert data["qrCodeWidget"] is not None  # treatment, every time
    f = tables.rule_firings
    assert {(r.variant, r.profile_id) for r in await rows(api, select(f))} == {("treatment", None)}


async def test_a_dry_run_explains_the_assignment(api: Api) -> None:
    known = {n: await sale(api, customer(n)) for n in range(6)}

    async def explain(body: dict[str, Any]) -> dict[str, Any]:
        session = await api.session()
        answer = await api.send(dict(body, sessionId=session), params={"dryRun": "true"})
        assert answer.status_code == 200, answer.text
        [trace] = [t for t in answer.json()["data"]["explanation"] if t["rule"] == RULE]
        return dict(trace)

    key = await salt(api)
    for n, data in known.items():
        drawn = holdout.bucket(key, RULE, data["profile"]["id"])
        trace = await explain(customer(n))
        if drawn < 5000:
            assert trace == {
                "rule": RULE, "outcome": "held-out", "path": "holdoutPercent",
                "detail": f"in the 50% holdout (bucket {drawn} < 5000 of 10000):"
                " recorded, nothing shown or sent",
            }  # fmt: skip
        else:
            assert trace["outcome"] == "fired"
            assert trace["detail"].endswith(f"; holdout 50%: treatment (bucket {drawn} >= 5000 of 10000)")
    new = await explain(customer(99))
    assert new["outcome"] == "fired"
    assert new["detail"].endswith(
        "holdout 50%: a new customer; the profile id the sale creates decides (50% are held out)"
    )
    anonymous = await explain(seed_transaction(customer=None, loyalty=None))
    assert anonymous["detail"].endswith("holdout 50%: an anonymous sale is never held out")


def test_cmc_rules_test_explains_the_assignment(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    apply_registry(settings, REGISTRY)
    body = tmp_path / "tx.json"
    transaction = customer(7)
    del transaction["sessionId"]  # the file may leave it out
    body.write_text(json.dumps(transaction))
    env = {"CMC_DATABASE_URL": database_url, "CMC_LOG_LEVEL": "warning"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        assert cli.main(["rules", "test", str(body)]) == 0
    out = capsys.readouterr().out
    assert f"FIRED              {RULE}: " in out
    assert "holdout 50%: a new customer; the profile id the sale creates decides" in out


# --------------------------------------------------------------------------- quiet hours


async def test_an_sms_quiet_hours_would_push_past_twelve_hours_is_suppressed(
    recording_factory: Callable[..., Any],
) -> None:
    # locl is quiet from 12:00 to 11:00: at 13:00 the next moment allowed is 22 hours away, at 02:00 nine.
    late, early = (
        ManualClock(datetime(2026, 6, 15, 13, 0, tzinfo=LA)),
        ManualClock(datetime(2026, 6, 16, 2, 0, tzinfo=LA)),
    )
    m = tables.messages
    for clock, expected in ((late, ("suppressed", "quiet-hours")), (early, ("queued", None))):
        async with recording_factory(clock) as api:
            data = await sale(api, customer(1, terminalId="terml", posLocationId="locl"))
            [row] = await rows(api, select(m).where(m.c.transaction_id == data["id"]))
            assert (row.status, row.reason) == expected
            # The answer names only a message that will go.
            assert data["notificationMessageId"] == (row.id if row.status == "queued" else None)
            [effect] = data["effects"]
            assert effect["messageId"] == data["notificationMessageId"]
    assert row.next_attempt_at == datetime(2026, 6, 16, 11, 0, tzinfo=LA)  # the early one waits 9 hours


async def test_processes_starting_at_once_keep_one_holdout_secret(database_url: str) -> None:
    """Two handles (as two processes starting together have) race to make the secret: one is kept."""
    first, second = Database.open(database_url), Database.open(database_url)
    try:
        await asyncio.to_thread(migrate.upgrade, first)
        await asyncio.gather(*(holdout.ensure_secret(db) for db in (first, second, first, second)))
        secrets = {await db.read(holdout.stored_secret) for db in (first, second)}
        await holdout.ensure_secret(first)  # again: nothing changes
        assert {await first.read(holdout.stored_secret)} == secrets
    finally:
        await first.close()
        await second.close()
    [secret] = secrets
    assert len(secret) == 32


async def test_an_sms_goes_to_the_provider_which_reports_it_delivered(
    recording_factory: Callable[..., Any], clock: ManualClock
) -> None:
    """The whole loop: a sale queues an SMS, the provider (a real HTTP server) takes it and reports back."""
    with sms_server(201) as provider:
        async with recording_factory(clock, sms_url=provider.url("AC123:s3cret")) as api:
            for n in range(40):  # a customer in the treatment: the holdout's SMS never goes
                data = await sale(api, customer(n))
                if data["notificationMessageId"]:
                    break
            mid = data["notificationMessageId"]
            outbox = Dispatcher(api.db(), api.settings, clock=clock)
            await outbox.run_once()
            await outbox.stop()
            [request] = [r for r in provider.requests if r.form["StatusCallback"].endswith(mid)]
            callback = request.form["StatusCallback"]
            assert callback == f"http://cmc.test/sms/status/{mid}"
            form = {"MessageSid": "SM1", "MessageStatus": "delivered", "AccountSid": "AC123"}
            signature = status.signature(b"s3cret", callback, list(form.items()))
            answer = await api.http.post(
                callback.removeprefix("http://cmc.test"),
                data=form,
                headers={status.SIGNATURE_HEADER: signature},
            )
            assert answer.status_code == 204
            m = tables.messages
            [row] = await rows(api, select(m.c.status, m.c.provider_id, m.c.reported_at).where(m.c.id == mid))
    assert tuple(row) == ("delivered", "SM1", clock.now)
