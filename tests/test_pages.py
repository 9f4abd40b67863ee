"""Public pages on the real app: short links, QR images and pages, the CFS page and its live feed, opt-out."""

from __future__ import annotations

import asyncio
import io
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx2
import pytest
import yaml
import zxingcpp
from PIL import Image
from sqlalchemy import func, insert, select

from cmc import links, screens
from cmc.api.app import create_app
from cmc.api.optout import mask
from cmc.cfs_feed import CfsEvent, CfsFeed, Subscription
from cmc.placeholders import fill
from cmc.store import tables
from cmc.store.database import Database
from support import REGISTRY, Api, Lifespan, apply_registry, make_settings
from test_qr import matrix_image, svg_modules

BASE = "http://cmc.test"
MARKETING = {
    "widgets": [
        {"id": 1, "name": "Digital Coupons", "landingUrl": "https://example.com/coupon?c={code}",
         "title": "10% off your next visit"},
    ],
    "cfsTemplates": [
        {"id": 7, "name": "Thank you", "slides": [
            {"title": "Thanks, {firstName}!", "body": "Scan for your coupon"},
            {"title": "Slide two", "body": "Fresh every week"},
        ]},
        {"id": 8, "name": "Tricky", "slides": [
            {"title": "{{ 7 * 7 }} <b>bold</b> {unknown}", "body": "<script>alert(1)</script>"},
        ]},
    ],
}  # fmt: skip


def registry_with_marketing(tmp_path: Path, marketing: dict[str, Any] = MARKETING) -> Path:
    """The test registry with comp5's widgets and CFS templates filled in."""
    data = yaml.safe_load(REGISTRY.read_text())
    [comp5] = [c for pos in data["posSystems"] for c in pos["companies"] if c["id"] == "comp5"]
    comp5.update(marketing)
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
async def cfs_api(tmp_path: Path, database_url: str) -> AsyncIterator[Api]:
    """The app over a registry whose comp5 has CFS templates (on each backend)."""
    settings = make_settings(tmp_path, database_url=database_url)
    await asyncio.to_thread(apply_registry, settings, registry_with_marketing(tmp_path))
    app = create_app(settings)
    async with Lifespan(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE) as http:
            yield Api(http, app, settings)


class HasDb(Protocol):
    """Anything that opens the app's database (an ``Api``, or the browser test's server)."""

    def db(self) -> Database: ...


async def write(api: HasDb, fn: Callable[..., Any]) -> Any:
    db = api.db()
    try:
        return await db.write(fn)
    finally:
        await db.close()


async def add_link(api: HasDb, *, code: str = "Xk3_9aQzPw-abcdefghijk", title: str = "10% off") -> str:
    row = {
        "code": code, "pos_system_id": "pax", "company_id": "comp5", "location_id": "loc5",
        "terminal_id": "term5", "transaction_id": "tx-1", "widget_id": 1, "title": title,
        "target_url": f"https://example.com/coupon?c={code}", "scans": 0, "created_at": datetime.now(UTC),
    }  # fmt: skip
    await write(api, lambda conn: conn.execute(insert(tables.short_links).values(row)))
    return code


def qr_payload(code: str, *, title: str = "10% off", first_name: str | None = "Ada") -> dict[str, Any]:
    """What the lead's marketing writes for a fired QR widget."""
    return {
        "type": "qr",
        "transactionId": "tx-1",
        "title": title,
        **links.short_link_urls(BASE, code),
        "qrSvgUrl": links.qr_svg_url(BASE, code),
        "firstName": first_name,
        "templateId": 7,
    }


async def add_event(
    api: HasDb, payload: dict[str, Any], *, terminal: str = "term5", at: datetime | None = None
) -> int:
    row = {"pos_system_id": "pax", "terminal_id": terminal, "payload": payload,
           "created_at": at or datetime.now(UTC)}  # fmt: skip
    result = await write(api, lambda conn: conn.execute(insert(tables.cfs_events).values(row)))
    return int(result.inserted_primary_key[0])


async def fetch_one(api: Api, query: Any) -> Any:
    db = api.db()
    try:
        return await db.read(lambda conn: conn.execute(query).one())
    finally:
        await db.close()


def is_problem(answer: httpx2.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["status"] == status


def decode(image: Image.Image) -> str:
    (result,) = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return str(result.text)


def decode_svg(svg: bytes) -> str:
    dark, width, scale = svg_modules(svg)
    return decode(matrix_image(dark, width // scale))


# --- short links ---------------------------------------------------------------------------------


async def test_short_link_redirects_and_counts_scans(api: Api) -> None:
    code = await add_link(api)
    for scans in (1, 2):
        before = datetime.now(UTC)
        answer = await api.http.get(f"/s/{code}")
        assert answer.status_code == 302
        assert answer.headers["location"] == f"https://example.com/coupon?c={code}"
        assert answer.headers["cache-control"] == "no-store"
        row = await fetch_one(api, select(tables.short_links).where(tables.short_links.c.code == code))
        assert row.scans == scans
        assert before - timedelta(seconds=1) <= row.last_scan_at <= datetime.now(UTC)


async def test_unknown_codes_are_404_problems(api: Api) -> None:
    code = await add_link(api)
    for path in ("/s/nope", "/s/bad%20code", "/qr/nope.png", "/qr/nope.svg", "/qr/nope", "/qr/nope/preview",
                 f"/qr/{code}.gif"):  # fmt: skip
        is_problem(await api.http.get(path), 404)


# --- QR images and pages -------------------------------------------------------------------------


async def test_png_decodes_to_the_short_link(api: Api) -> None:
    code = await add_link(api)
    answer = await api.http.get(f"/qr/{code}.png")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/png"
    assert "immutable" in answer.headers["cache-control"]
    assert decode(Image.open(io.BytesIO(answer.content))) == f"{BASE}/s/{code}"


async def test_svg_decodes_to_the_short_link_and_scales(api: Api) -> None:
    code = await add_link(api)
    answer = await api.http.get(f"/qr/{code}.svg")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/svg+xml")
    assert "immutable" in answer.headers["cache-control"]
    root = ET.fromstring(answer.content)
    assert root.attrib["viewBox"] == f"0 0 {root.attrib['width']} {root.attrib['height']}"
    assert decode_svg(answer.content) == f"{BASE}/s/{code}"


def inline_svg(html: str) -> bytes:
    match = re.search(r"<svg.*?</svg>", html, re.S)
    assert match, "no inline SVG"
    return match[0].encode()


async def test_qr_page_for_the_customer_screen(api: Api) -> None:
    code = await add_link(api, title='<script>alert("x")</script> & 10% off')
    answer = await api.http.get(f"/qr/{code}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; 10% off" in html
    assert "<script>alert" not in html
    assert "Scan with your phone camera" in html
    assert decode_svg(inline_svg(html)) == f"{BASE}/s/{code}"
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors" not in csp and "x-frame-options" not in answer.headers


async def test_preview_page_for_the_cashier(api: Api) -> None:
    code = await add_link(api, title="<b>Tea</b> time")
    answer = await api.http.get(f"/qr/{code}/preview")
    assert answer.status_code == 200
    html = answer.text
    assert "&lt;b&gt;Tea&lt;/b&gt; time" in html and "<b>Tea" not in html
    assert f"{BASE}/s/{code}" in html
    assert decode_svg(inline_svg(html)) == f"{BASE}/s/{code}"


def test_link_builders() -> None:
    code = links.new_code()
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", code)
    assert links.short_link_urls("https://cmc.example/", code) == {
        "shortLinkUrl": f"https://cmc.example/s/{code}",
        "qrCodeLinkUrl": f"https://cmc.example/qr/{code}.png",
        "qrCodeHtmlLinkUrl": f"https://cmc.example/qr/{code}",
        "qrCodePreviewLinkUrl": f"https://cmc.example/qr/{code}/preview",
    }
    assert links.qr_svg_url("https://cmc.example", code) == f"https://cmc.example/qr/{code}.svg"
    assert (
        screens.carousel_url("https://cmc.example/", "pax", "term 5", template_id=7)
        == "https://cmc.example/cfs/pax/term%205?template=7"
    )
    assert screens.carousel_url("https://cmc.example", "pax", "t5") == "https://cmc.example/cfs/pax/t5"


# --- the CFS page ---------------------------------------------------------------------------------


async def test_cfs_page_shows_the_template_and_listens(cfs_api: Api) -> None:
    answer = await cfs_api.http.get("/cfs/pax/term5?template=7&interval=2")
    assert answer.status_code == 200
    html = answer.text
    assert "<h1>Thanks!</h1>" in html  # no customer yet: the placeholder and its comma vanish
    assert "Slide two" in html and "Scan for your coupon" in html
    assert "EventSource" in html and "/cfs/pax/term5/events" in html
    config = json.loads(re.search(r'id="cfs-config">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    assert config["current"] == "7" and config["pinned"] is True and config["intervalMs"] == 2000
    assert 'data-qr="hidden"' in html
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors" not in csp and "x-frame-options" not in answer.headers
    nonce = re.search(r"'nonce-([^']+)'", csp)[1]  # type: ignore[index]
    assert f'<script nonce="{nonce}">' in html


async def test_cfs_page_defaults_and_fallbacks(cfs_api: Api) -> None:
    html = (await cfs_api.http.get("/cfs/pax/term6?template=999&interval=abc")).text
    assert "<h1>Thanks!</h1>" in html  # unknown template: the company's first one
    config = json.loads(re.search(r'id="cfs-config">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    assert config["intervalMs"] == 6000 and config["pinned"] is False
    is_problem(await cfs_api.http.get("/cfs/pax/nope"), 404)
    is_problem(await cfs_api.http.get("/cfs/nope/term5"), 404)
    is_problem(await cfs_api.http.get("/cfs/pax/nope/events"), 404)


async def test_cfs_page_without_templates_says_welcome(api: Api) -> None:
    answer = await api.http.get("/cfs/pax/term5")
    assert answer.status_code == 200
    assert "<h1>Welcome</h1>" in answer.text


async def test_merchant_text_is_data_not_template_code(cfs_api: Api) -> None:
    html = (await cfs_api.http.get("/cfs/pax/term5?template=8")).text
    assert "{{ 7 * 7 }} &lt;b&gt;bold&lt;/b&gt;</h1>" in html
    assert "49" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_cfs_page_opened_just_after_a_sale_greets_and_shows_the_qr(cfs_api: Api) -> None:
    code = await add_link(cfs_api)
    await add_event(
        cfs_api, qr_payload(code, title="Coupon <inside>"), at=datetime.now(UTC) - timedelta(seconds=5)
    )
    html = (await cfs_api.http.get("/cfs/pax/term5")).text
    assert "<h1>Thanks, Ada!</h1>" in html
    assert 'data-qr="shown"' in html and "Coupon &lt;inside&gt;" in html
    assert f'src="{BASE}/qr/{code}.svg"' in html
    config = json.loads(re.search(r'id="cfs-config">(.*?)</script>', html, re.S)[1])  # type: ignore[index]
    assert 35_000 < config["initialQrMs"] <= 40_000
    # Another terminal's sale greets nobody there; an old sale greets nobody at all.
    assert "<h1>Thanks!</h1>" in (await cfs_api.http.get("/cfs/pax/term6")).text
    await add_event(cfs_api, qr_payload(code, first_name="Old"), terminal="term6",
                    at=datetime.now(UTC) - timedelta(minutes=10))  # fmt: skip
    assert "<h1>Thanks!</h1>" in (await cfs_api.http.get("/cfs/pax/term6")).text


@pytest.mark.parametrize(
    ("text", "values", "shown"),
    [
        ("Thanks, {firstName}!", {"firstName": "Ada"}, "Thanks, Ada!"),
        ("Thanks, {firstName}!", {}, "Thanks!"),
        ("Hi {firstName}, here it is", {}, "Hi, here it is"),
        ("{firstName} scan me", {}, "scan me"),
        ("Code {code} today", {"code": "<x>"}, "Code <x> today"),
        ("{{ 7 * 7 }}", {}, "{{ 7 * 7 }}"),
        ("No placeholders.", {"firstName": "Ada"}, "No placeholders."),
    ],
)
def test_fill(text: str, values: dict[str, str], shown: str) -> None:
    assert fill(text, values) == shown


def test_mask() -> None:
    assert mask("ada@example.com") == "a••@example.com"
    assert mask("+14155550100") == "••••••••0100"


# --- the live feed --------------------------------------------------------------------------------


class Sse:
    """A raw ASGI GET on the app, read as a server-sent event stream (httpx's ASGI transport buffers)."""

    def __init__(self, app: Any, path: str, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.path = path
        self.headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.start: dict[str, Any] = {}
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._buffer = b""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sse:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": self.path, "raw_path": self.path.encode(), "query_string": b"",
            "headers": [(b"host", b"cmc.test"), *self.headers], "server": ("cmc.test", 80),
            "client": ("127.0.0.1", 1234), "root_path": "", "state": {},
        }  # fmt: skip
        requested = False

        async def receive() -> dict[str, Any]:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.start = message
            elif message.get("body"):
                self._chunks.put_nowait(message["body"])

        self._task = asyncio.create_task(self.app(scope, receive, send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 5)

    async def next(self, wait: float = 5.0) -> dict[str, str]:
        """The next event (or comment) as its fields."""
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await asyncio.wait_for(self._chunks.get(), wait)
        block, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        fields: dict[str, str] = {}
        for line in block.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            fields[name] = fields[name] + "\n" + value if name in fields else value
        return fields


def feed_of(api: Api) -> CfsFeed:
    feed: CfsFeed = api.app.app.state.services.feed
    return feed


async def test_events_stream_delivers_its_terminals_events(cfs_api: Api) -> None:
    code = await add_link(cfs_api)
    async with Sse(cfs_api.app, "/cfs/pax/term5/events") as stream:
        ready = await stream.next()
        assert stream.start["status"] == 200
        headers = dict(stream.start["headers"])
        assert headers[b"content-type"].startswith(b"text/event-stream")
        assert ready["event"] == "ready" and ready["retry"] == "2000"
        assert feed_of(cfs_api).subscriber_count == 1
        await add_event(cfs_api, qr_payload(code, first_name="Bob"), terminal="term6")
        event_id = await add_event(cfs_api, qr_payload(code))
        event = await stream.next(wait=3)
        assert event["event"] == "qr" and event["id"] == str(event_id)
        assert json.loads(event["data"]) == qr_payload(code)
        with pytest.raises(TimeoutError):
            await stream.next(wait=0.8)  # term6's event never comes here
    await asyncio.sleep(0.05)
    assert feed_of(cfs_api).subscriber_count == 0


async def test_reconnect_with_last_event_id_gets_missed_events(cfs_api: Api) -> None:
    code = await add_link(cfs_api)
    first = await add_event(cfs_api, qr_payload(code, first_name="One"))
    second = await add_event(cfs_api, qr_payload(code, first_name="Two"))
    async with Sse(cfs_api.app, "/cfs/pax/term5/events", {"Last-Event-ID": str(first)}) as stream:
        assert (await stream.next())["event"] == "ready"
        missed = await stream.next()
        assert missed["id"] == str(second) and json.loads(missed["data"])["firstName"] == "Two"
        with pytest.raises(TimeoutError):
            await stream.next(wait=0.6)  # not again from the live feed


async def test_feed_starts_after_existing_events_and_fills_gaps(cfs_api: Api) -> None:
    """No replay at start-up; an id committed after a higher one (PostgreSQL) still goes out, once."""
    old = await add_event(cfs_api, {"type": "qr", "n": 0})

    def add(n: int) -> Callable[[Any], Any]:
        row = {"id": old + n, "pos_system_id": "pax", "terminal_id": "term5", "payload": {"n": n},
               "created_at": datetime.now(UTC)}  # fmt: skip
        return lambda conn: conn.execute(insert(tables.cfs_events).values(row))

    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))  # rounds only when the test asks
    await feed.start()
    try:
        assert feed.last_id == old
        with feed.subscribe("pax", "term5") as sub:
            await write(cfs_api, add(2))
            await feed.poll()
            await write(cfs_api, add(1))  # the late commit of a lower id
            await feed.poll()
            await feed.poll()
            got = [await sub.next(1), await sub.next(1), await sub.next(0.3)]
            assert [e.payload["n"] if e else None for e in got] == [2, 1, None]
    finally:
        await feed.stop()
        await db.close()


def test_a_slow_subscriber_drops_its_oldest_events() -> None:
    sub = Subscription(("pax", "term5"), size=2)
    for n in range(5):
        sub.offer(CfsEvent(n, "pax", "term5", {"n": n}, datetime.now(UTC)))
    assert sub.dropped == 3
    got = [sub._queue.get_nowait().payload["n"] for _ in range(2)]
    assert got == [3, 4]


async def test_wake_polls_at_once(cfs_api: Api) -> None:
    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))
    await feed.start()
    try:
        with feed.subscribe("pax", "term5") as sub:
            await asyncio.sleep(0.05)  # the first round has run; the next is an hour away
            await add_event(cfs_api, {"type": "qr"})
            feed.wake()
            assert await sub.next(2) is not None
    finally:
        await feed.stop()
        await db.close()


# --- opt-out --------------------------------------------------------------------------------------


async def add_message(
    api: Api, *, token: str, channel: str = "email", recipient: str = "ada@example.com"
) -> None:
    now = datetime.now(UTC)
    row = {
        "id": f"msg-{token}", "pos_system_id": "pax", "company_id": "comp5", "location_id": "loc5",
        "transaction_id": "tx-1", "rule": "mid-basket coupon", "template_id": "thanks-email",
        "channel": channel, "recipient": recipient, "subject": "Your coupon", "body": "Hi",
        "optout_token": token, "status": "sent", "attempts": 1, "next_attempt_at": now, "created_at": now,
    }  # fmt: skip
    await write(api, lambda conn: conn.execute(insert(tables.messages).values(row)))


async def count_opt_outs(api: Api) -> int:
    db = api.db()
    try:
        return int(
            await db.read(lambda c: c.execute(select(func.count()).select_from(tables.opt_outs)).scalar())
        )
    finally:
        await db.close()


async def test_opt_out_page_records_once(api: Api) -> None:
    await add_message(api, token="tok-1")
    await add_message(api, token="tok-2")  # another message to the same contact
    for path in ("/u/tok-1", "/u/tok-1", "/u/tok-2"):
        answer = await api.http.get(path)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/html")
        assert (
            "unsubscribed" in answer.text and "a••@example.com" in answer.text and "Green Leaf" in answer.text
        )
        assert await count_opt_outs(api) == 1
    row = await fetch_one(api, select(tables.opt_outs))
    assert (row.pos_system_id, row.company_id, row.channel, row.recipient) == (
        "pax",
        "comp5",
        "email",
        "ada@example.com",
    )


async def test_one_click_unsubscribe_post(api: Api) -> None:
    await add_message(api, token="tok-sms", channel="sms", recipient="+14155550100")
    answer = await api.http.post("/u/tok-sms", content=b"List-Unsubscribe=One-Click",
                                 headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status_code == 200 and "text messages" in answer.text
    assert await count_opt_outs(api) == 1


async def test_unknown_opt_out_token_is_a_404_page(api: Api) -> None:
    answer = await api.http.get("/u/nope")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "not valid" in answer.text
    assert await count_opt_outs(api) == 0
