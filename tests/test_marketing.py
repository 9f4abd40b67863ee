"""POS Rules through the real app: what fires, what it writes, and what it must never write twice.

The registry is tests/marketing.yaml: the test registry's ``pax`` system with issue 3's example
widgets, templates and rules under comp5, plus a ``stop`` rule, a quiet-hours location and a POS
system with rules turned off.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2
import pytest
from sqlalchemy import insert, select, text, update

from cmc import cli
from cmc.api.app import create_app
from cmc.clock import Clock, system_clock
from cmc.store import tables
from cmc.store.database import Database
from support import (
    Api,
    Lifespan,
    ManualClock,
    apply_registry,
    count_rows,
    make_settings,
    seed_transaction,
    unique,
)

MARKETING = Path(__file__).with_name("marketing.yaml")
BASE = "http://cmc.test"
LA = ZoneInfo("America/Los_Angeles")
WRITTEN = (
    "transactions", "profiles", "profile_identifiers", "profile_conflicts",
    "rule_firings", "short_links", "messages", "cfs_events",
)  # fmt: skip
"""Every table a transaction (and its marketing) writes to."""

DRINKS_ONLY = [{"productId": "p-2", "productName": "Tea", "productCategory": "Drinks", "quantity": 1}]
"""A basket the ``edibles fan`` rule ignores."""


@pytest.fixture
def marketing_factory(tmp_path: Path, database_url: str) -> Callable[..., Any]:
    """Like conftest's ``api_factory``, on the marketing registry, with the outbox dispatcher off."""

    @asynccontextmanager
    async def start(clock: Clock = system_clock, **overrides: Any) -> AsyncIterator[Api]:
        settings = make_settings(tmp_path, **{"database_url": database_url, "dispatcher": False, **overrides})
        await asyncio.to_thread(apply_registry, settings, MARKETING)
        app = create_app(settings, clock=clock)
        async with Lifespan(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
                yield Api(http, app, settings)

    return start


@pytest.fixture
async def api(marketing_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    async with marketing_factory() as api:
        yield api


def screen_token(api: Api, location: str, terminal: str, *, pos: str = "pax") -> str:
    """The pairing token of a terminal's screen in the running app's registry snapshot."""
    token: str = api.app.app.state.services.directory.current.locations[(pos, location)].screen_tokens[
        terminal
    ]
    return token


async def fetch(api: Api, query: Any) -> list[Any]:
    db = api.db()
    try:
        return await db.read(lambda conn: list(conn.execute(query)))
    finally:
        await db.close()


async def write(api: Api, statement: Any) -> None:
    db = api.db()
    try:
        await db.write(lambda conn: conn.execute(statement))
    finally:
        await db.close()


async def counts(api: Api) -> dict[str, int]:
    return {table: await count_rows(api, table) for table in WRITTEN}


async def messages_of(api: Api, transaction_id: str) -> dict[str, Any]:
    """The transaction's message rows by channel."""
    m = tables.messages
    rows = await fetch(api, select(m).where(m.c.transaction_id == transaction_id))
    by_channel = {row.channel: row for row in rows}
    assert len(by_channel) == len(rows)
    return by_channel


async def tender_ok(api: Api, body: dict[str, Any] | None = None, *, pos: str = "pax") -> dict[str, Any]:
    answer = await api.tender(body, pos=pos)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def someone(n: int, **customer: Any) -> dict[str, Any]:
    """A seed transaction for customer ``n`` (own POS id, email, phone and card)."""
    person = {
        "id": f"cust-{n}",
        "firstName": f"Person{n}",
        "contacts": [{"email": f"p{n}@example.com", "phone": f"(415) 555-02{n:02d}"}],
        **customer,
    }
    return seed_transaction(customer=person, loyalty={"cardNumber": f"CARD-{n}"})


async def login(api: Api, pos: str, client_id: str, secret: str) -> None:
    """A token for a POS system of the marketing registry (conftest only knows the test registry's)."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    answer = await api.http.post(
        "/connect/token",
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "client_credentials", "scope": "pos_integration"},
    )
    assert answer.status_code == 200, answer.text
    api._tokens[pos] = answer.json()["access_token"]


async def dry_run(api: Api, body: dict[str, Any], *, pos: str = "pax", flag: str = "true") -> dict[str, Any]:
    """A dry run with a session a real transaction could use (what a dry run needs, like the real one)."""
    session = await api.session(pos=pos, terminal=body["terminalId"], location=body["posLocationId"])
    answer = await api.send(dict(body, sessionId=session), pos=pos, params={"dryRun": flag})
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    assert data["dryRun"] is True
    return data


def traces(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A dry run's explanation by rule name."""
    return {trace["rule"]: trace for trace in data["explanation"]}


# --------------------------------------------------------------------------- the example rules


async def test_example_rules_fire_for_a_matching_sale(api: Api) -> None:
    body = seed_transaction()  # 23.47, a Sale, 2 Edibles: both example rules match
    data = await tender_ok(api, body)
    sms, email = (await messages_of(api, data["id"]))["sms"], (await messages_of(api, data["id"]))["email"]

    widget = data["qrCodeWidget"]
    code = widget["shortLinkUrl"].removeprefix(f"{BASE}/s/")
    assert len(code) >= 16 and "/" not in code
    assert widget == {
        "widgetId": 1,  # the higher-priority rule's widget
        "shortLinkUrl": f"{BASE}/s/{code}",
        "qrCodeLinkUrl": f"{BASE}/qr/{code}.png",
        "qrCodeHtmlLinkUrl": f"{BASE}/qr/{code}",
        "qrCodePreviewLinkUrl": f"{BASE}/qr/{code}/preview",
        "qrCode": {"htmlLinkUrl": f"{BASE}/qr/{code}", "previewHtmlLinkUrl": f"{BASE}/qr/{code}/preview"},
        "notificationMessageId": sms.id,
        "profile": data["profile"],
        "sessionId": body["sessionId"],
    }
    assert data["cfsTemplate"] == {
        "accountTemplateId": 7,
        "cfsCarouselUrl": f"{BASE}/cfs/{screen_token(api, 'loc5', 'term5')}?template=7",
    }
    assert data["notificationMessageId"] == sms.id  # the first notify of the rule: thanks-sms
    shown = {"rule": "mid-basket coupon", "shown": True, "reason": None}
    assert data["effects"] == [
        {**shown, "kind": "qrWidget", "target": "1", "messageId": None},
        {**shown, "kind": "cfsTemplate", "target": "7", "messageId": None},
        {**shown, "kind": "notify", "target": "thanks-sms", "messageId": sms.id},
        {**shown, "kind": "notify", "target": "thanks-email", "messageId": email.id},
        # One QR widget per sale: the "edibles fan" one lost, and the response says so.
        {"rule": "edibles fan", "kind": "qrWidget", "target": "2", "messageId": None, "shown": False,
         "reason": "one QR widget per sale: rule 'mid-basket coupon' comes first by priority"},
    ]  # fmt: skip

    [link] = await fetch(api, select(tables.short_links))
    assert (link.code, link.widget_id, link.transaction_id) == (code, 1, data["id"])
    assert (link.pos_system_id, link.company_id, link.location_id, link.terminal_id) == (
        "pax", "comp5", "loc5", "term5",
    )  # fmt: skip
    assert link.target_url == f"https://example.com/coupon?c={code}"
    assert (link.title, link.scans) == ("10% off your next visit", 0)

    pid = data["profile"]["id"]
    assert (sms.recipient, email.recipient) == ("+14155550100", "ada@example.com")
    for row, template in ((sms, "thanks-sms"), (email, "thanks-email")):
        assert (row.transaction_id, row.rule, row.template_id) == (data["id"], "mid-basket coupon", template)
        assert (row.status, row.attempts, row.location_id) == ("queued", 0, "loc5")
    assert (sms.subject, email.subject) == (None, "Your coupon")

    firings = await fetch(api, select(tables.rule_firings).order_by(tables.rule_firings.c.id))
    assert [(f.rule, f.profile_id, f.transaction_id) for f in firings] == [
        ("mid-basket coupon", pid, data["id"]),
        ("edibles fan", pid, data["id"]),
    ]
    [event] = await fetch(api, select(tables.cfs_events))
    assert (event.pos_system_id, event.location_id, event.terminal_id) == ("pax", "loc5", "term5")
    # What the screen shows of the sale, and nothing else (no transaction id, no contact).
    assert event.payload == {
        "firstName": "Ada", "code": code, "title": "10% off your next visit", "templateId": 7,
    }  # fmt: skip


async def test_message_bodies_render_placeholders_and_carry_an_opt_out_link(api: Api) -> None:
    data = await tender_ok(api)
    rows = await messages_of(api, data["id"])
    short = data["qrCodeWidget"]["shortLinkUrl"]
    sms, email = rows["sms"], rows["email"]
    assert sms.body.startswith(f"Thanks Ada! Your coupon: {short}")
    assert email.body.startswith(f"Hi Ada, here it is: {short}")
    tokens = set()
    for row in (sms, email):
        assert "{" not in row.body  # every placeholder filled
        assert f"{BASE}/u/{row.optout_token}" in row.body
        assert row.body.rstrip().endswith(f"/u/{row.optout_token}")
        assert len(row.optout_token) >= 16
        tokens.add(row.optout_token)
    assert len(tokens) == 2  # one token per message


async def test_customer_without_phone_gets_no_sms(api: Api) -> None:
    body = someone(1, contacts=[{"type": "Email", "value": "p1@example.com"}])
    data = await tender_ok(api, body)
    rows = await messages_of(api, data["id"])
    assert set(rows) == {"email"}
    notify = {e["target"]: e["messageId"] for e in data["effects"] if e["kind"] == "notify"}
    assert notify == {"thanks-sms": None, "thanks-email": rows["email"].id}
    assert data["notificationMessageId"] == rows["email"].id
    assert data["qrCodeWidget"]["notificationMessageId"] == rows["email"].id
    assert rows["email"].body.startswith("Hi Person1, here it is: ")


# --------------------------------------------------------------------------- replay safety


async def test_replay_returns_identical_response_and_writes_nothing(api: Api) -> None:
    body = seed_transaction()
    first = await api.tender(body)
    assert first.status_code == 200, first.text
    assert first.json()["data"]["qrCodeWidget"] is not None
    before = await counts(api)
    assert before["short_links"] == 1 and before["messages"] == 2 and before["cfs_events"] == 1
    again = await api.send(body)  # the same session: a lost answer retried
    assert again.status_code == 200 and again.content == first.content
    third = await api.send(dict(body, sessionId=await api.session()))  # a client that reopened a session
    assert third.status_code == 200 and third.content == first.content
    assert await counts(api) == before
    [profile] = await fetch(api, select(tables.profiles.c.visit_count))
    assert profile.visit_count == 1


# --------------------------------------------------------------------------- limit, priority/stop


async def test_per_customer_limit(api: Api) -> None:
    first = await tender_ok(api, someone(1) | {"products": DRINKS_ONLY})
    assert first["qrCodeWidget"]["widgetId"] == 1
    assert {e["rule"] for e in first["effects"]} == {"mid-basket coupon"}

    again = someone(1) | {"products": DRINKS_ONLY}
    second = await tender_ok(api, again)
    assert second["profile"]["id"] == first["profile"]["id"]
    assert second["qrCodeWidget"] is None and second["cfsTemplate"] is None
    assert second["effects"] == [] and second["notificationMessageId"] is None
    assert await messages_of(api, second["id"]) == {}

    # the same customer still gets rules without a limit
    edibles = await tender_ok(api, someone(1))
    assert [e["rule"] for e in edibles["effects"]] == ["edibles fan"]
    assert edibles["qrCodeWidget"]["widgetId"] == 2 and edibles["cfsTemplate"] is None

    # a different customer is not limited by the first one's firing
    other = await tender_ok(api, someone(2) | {"products": DRINKS_ONLY})
    assert other["profile"]["id"] != first["profile"]["id"]
    assert other["qrCodeWidget"]["widgetId"] == 1 and other["cfsTemplate"]["accountTemplateId"] == 7

    f = tables.rule_firings
    rows = await fetch(api, select(f.c.profile_id).where(f.c.rule == "mid-basket coupon"))
    assert sorted(r.profile_id for r in rows) == sorted([first["profile"]["id"], other["profile"]["id"]])

    # the dry run says why
    preview = await dry_run(api, someone(1) | {"products": DRINKS_ONLY, "sessionId": "any"})
    trace = traces(preview)["mid-basket coupon"]
    assert trace["outcome"] == "limited" and trace["path"] == "limit"

    # once the window (7 days) has passed, the rule fires for the customer again
    await write(api, update(f).values(fired_at=datetime.now(UTC) - timedelta(days=8)))
    later = await tender_ok(api, someone(1) | {"products": DRINKS_ONLY})
    assert later["qrCodeWidget"]["widgetId"] == 1


async def test_higher_priority_stop_rule_prevents_lower_ones(api: Api) -> None:
    body = seed_transaction()
    body["products"].append({"productId": "VIP", "productName": "Members' box", "quantity": 1})
    preview = await dry_run(api, dict(body, sessionId="any"))
    assert [e["rule"] for e in preview["effects"]] == ["vip stop"]
    explained = traces(preview)
    assert explained["vip stop"]["outcome"] == "fired"
    assert explained["mid-basket coupon"]["outcome"] == "skipped-after-stop"
    assert explained["edibles fan"]["outcome"] == "skipped-after-stop"

    data = await tender_ok(api, body)
    assert data["effects"] == [
        {
            "rule": "vip stop",
            "kind": "qrWidget",
            "target": "2",
            "messageId": None,
            "shown": True,
            "reason": None,
        }
    ]
    assert data["qrCodeWidget"]["widgetId"] == 2
    assert data["cfsTemplate"] is None and data["notificationMessageId"] is None
    assert [r.rule for r in await fetch(api, select(tables.rule_firings.c.rule))] == ["vip stop"]
    assert await count_rows(api, "messages") == 0
    [link] = await fetch(api, select(tables.short_links.c.widget_id, tables.short_links.c.target_url))
    assert (link.widget_id, link.target_url) == (2, "https://example.com/review")


async def test_a_terminal_without_a_screen_gets_no_template_and_no_event(api: Api) -> None:
    data = await tender_ok(api, seed_transaction(terminalId="term7"))  # cfs: false
    assert data["qrCodeWidget"]["widgetId"] == 1  # the POS may still show the QR itself
    assert data["cfsTemplate"] is None
    [template] = [e for e in data["effects"] if e["kind"] == "cfsTemplate"]
    assert (template["shown"], template["reason"]) == (
        False,
        "terminal 'term7' has no customer-facing screen",
    )
    assert await count_rows(api, "cfs_events") == 0


async def test_anonymous_sales_and_limited_rules_are_explained(api: Api) -> None:
    body = seed_transaction(sessionId="any", customer=None, loyalty=None)
    preview = await dry_run(api, body)
    limited = traces(preview)["mid-basket coupon"]
    assert (limited["outcome"], limited["path"]) == ("limited", "limit.anonymous")
    assert "anonymous: skip, the default" in limited["detail"] and "anonymous" in preview["text"]
    assert [e["rule"] for e in preview["effects"]] == ["edibles fan"]  # unlimited rules still fire
    data = await tender_ok(api, seed_transaction(customer=None, loyalty=None))
    assert data["profile"] is None and data["qrCodeWidget"]["widgetId"] == 2


# --------------------------------------------------------------------------- nothing fires


async def test_rules_off_by_setting(api: Api) -> None:
    await login(api, "norules", "norules-demo", "n0rul3s!")
    body = seed_transaction(terminalId="termn", posLocationId="locn")
    data = await tender_ok(api, body, pos="norules")
    assert data["qrCodeWidget"] is None and data["cfsTemplate"] is None
    assert data["notificationMessageId"] is None and data["effects"] == []
    assert data["profile"] is not None  # the sale itself is recorded as usual
    after = await counts(api)
    assert after["transactions"] == 1
    assert {t: after[t] for t in ("rule_firings", "short_links", "messages")} == dict.fromkeys(
        ("rule_firings", "short_links", "messages"), 0
    )
    # The terminal's screen still thanks the shopper (briefly, without a QR).
    [event] = await fetch(api, select(tables.cfs_events))
    assert event.payload == {"firstName": "Ada"}
    preview = await dry_run(api, dict(body, transactionId=unique()), pos="norules")
    assert preview["effects"] == []
    assert [(t["rule"], t["outcome"], t["path"]) for t in preview["explanation"]] == [
        ("*", "failed", "settings")
    ]


REVERSALS = {
    "Refund": {"transactionType": "Refund"},
    "Return": {"transactionType": "Return"},
    "Void": {"transactionType": "Void"},
    "refund, lower case": {"transactionType": " refund "},
    "negative Sale": {"transactionType": "Sale", "transactionAmount": -23.47},
    "negative Undefined": {"transactionType": "Undefined", "transactionAmount": "-30"},
}


async def test_reversals_never_fire(api: Api) -> None:
    for case, changes in REVERSALS.items():
        body = seed_transaction(**changes)
        preview = await dry_run(api, dict(body, sessionId="any"))
        assert preview["effects"] == [], case
        assert {t["outcome"] for t in preview["explanation"]} == {"reversal"}, case
        data = await tender_ok(api, body)
        assert data["qrCodeWidget"] is None and data["cfsTemplate"] is None, case
        assert data["effects"] == [] and data["notificationMessageId"] is None, case
    after = await counts(api)
    assert after["transactions"] == len(REVERSALS)
    assert {t: after[t] for t in ("rule_firings", "short_links", "messages", "cfs_events")} == dict.fromkeys(
        ("rule_firings", "short_links", "messages", "cfs_events"), 0
    )


# --------------------------------------------------------------------------- dry run


async def test_dry_run_explains_and_writes_nothing(api: Api) -> None:
    session = await api.session()
    body = seed_transaction(sessionId=session, transactionAmount=5)
    before = await counts(api)

    data = await dry_run(api, body)
    assert data["effects"] == [{"rule": "edibles fan", "kind": "qrWidget", "target": "2"}]  # shown
    explained = traces(data)
    failed = explained["mid-basket coupon"]
    assert failed["outcome"] == "failed" and failed["path"] == "when.all[0].amount"
    assert "5" in failed["detail"] and "15" in failed["detail"] and "50" in failed["detail"]
    assert explained["edibles fan"]["outcome"] == "fired"
    assert "vip stop" in explained and explained["vip stop"]["outcome"] == "failed"
    assert "night thanks" not in explained  # a rule of another location
    assert "when.all[0].amount" in data["text"] and "edibles fan" in data["text"]
    assert data["profile"]["customerEmail"] == "ada@example.com"  # as it would be after this sale

    matching = await dry_run(api, dict(body, transactionAmount=23.47), flag="1")
    assert [(e["rule"], e["kind"], e.get("shown", True)) for e in matching["effects"]] == [
        ("mid-basket coupon", "qrWidget", True),
        ("mid-basket coupon", "cfsTemplate", True),
        ("mid-basket coupon", "notify", True),
        ("mid-basket coupon", "notify", True),
        ("edibles fan", "qrWidget", False),  # the dry run says which QR widget the sale would carry
    ]
    assert "rule 'mid-basket coupon' comes first" in matching["effects"][-1]["reason"]

    assert await counts(api) == before
    assert await count_rows(api, "transactions") == 0  # the session was not consumed

    real = await api.send(body)  # the same session carries the real transaction
    assert real.status_code == 200, real.text
    assert real.json()["data"]["effects"] == [
        {
            "rule": "edibles fan",
            "kind": "qrWidget",
            "target": "2",
            "messageId": None,
            "shown": True,
            "reason": None,
        }
    ]
    assert (await counts(api))["transactions"] == 1


def test_cli_rules_test_prints_the_explanation_and_writes_nothing(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    apply_registry(settings, MARKETING)
    monkeypatch.setenv("CMC_DATABASE_URL", settings.database_url)

    def rows() -> dict[str, int]:
        db = Database.open(database_url)
        try:
            return db.run_sync(
                lambda conn: {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in WRITTEN}
            )
        finally:
            asyncio.run(db.close())

    before = rows()
    tx = seed_transaction(transactionAmount=5)
    del tx["sessionId"]
    path = tmp_path / "TX.json"
    path.write_text(json.dumps(tx))
    capsys.readouterr()
    assert cli.main(["rules", "test", str(path)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any(line.startswith("FIRED") and "edibles fan" in line for line in lines), out
    assert any(
        line.startswith("FAILED") and "mid-basket coupon" in line and "when.all[0].amount" in line
        for line in lines
    ), out
    assert "qrWidget 2" in out

    tx["transactionAmount"] = 23.47
    path.write_text(json.dumps(tx))
    assert cli.main(["rules", "test", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["data"]
    assert data["dryRun"] is True
    assert [e["rule"] for e in data["effects"]].count("mid-basket coupon") == 4
    assert rows() == before == dict.fromkeys(WRITTEN, 0)

    path.write_text("{not json")
    assert cli.main(["rules", "test", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


# --------------------------------------------------------------------------- notifications


async def test_opted_out_recipient_gets_no_message(api: Api) -> None:
    now = datetime.now(UTC)
    await write(
        api,
        insert(tables.opt_outs).values(
            [
                {"pos_system_id": "pax", "company_id": "comp5", "channel": "email",
                 "recipient": "ada@example.com", "created_at": now},
                # another merchant's opt-out does not stop this one's SMS
                {"pos_system_id": "pax", "company_id": "comp6", "channel": "sms",
                 "recipient": "+14155550100", "created_at": now},
            ]
        ),
    )  # fmt: skip
    data = await tender_ok(api)
    rows = await messages_of(api, data["id"])
    assert set(rows) == {"sms"}
    notify = {e["target"]: e["messageId"] for e in data["effects"] if e["kind"] == "notify"}
    assert notify == {"thanks-sms": rows["sms"].id, "thanks-email": None}


async def test_quiet_hours_delay_sms_but_not_email(marketing_factory: Callable[..., Any]) -> None:
    # 14:00 in LA, inside locq's quiet hours ("00:00-23:59"), which end 9 h 59 min later.
    clock = ManualClock(datetime(2026, 6, 15, 14, 0, tzinfo=LA).astimezone(UTC))
    async with marketing_factory(clock) as api:
        quiet = await tender_ok(api, seed_transaction(terminalId="termq", posLocationId="locq"))
        assert [e["rule"] for e in quiet["effects"] if e["kind"] == "notify"] == ["night thanks"] * 2
        rows = await messages_of(api, quiet["id"])
        sms, email = rows["sms"], rows["email"]
        assert sms.next_attempt_at > clock.now  # delayed ...
        assert sms.next_attempt_at.astimezone(LA).time() == time(23, 59)  # ... to the end of quiet hours
        assert sms.status == "queued"  # not dropped: within 12 hours of the sale (else: suppressed)
        assert email.next_attempt_at == email.created_at == clock.now  # email ignores quiet hours

        # loc5 has no quiet hours: its SMS is due at once
        loud = await messages_of(api, (await tender_ok(api))["id"])
        assert loud["sms"].next_attempt_at == loud["sms"].created_at == clock.now
