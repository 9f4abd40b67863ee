"""Public pages on the real app: short links, QR images and pages, opt-out, and the company look they wear.

The customer-facing screen's page and its stream are tested in test_screens.py.
"""

from __future__ import annotations

import asyncio
import io
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

from cmc import links
from cmc.api.app import create_app
from cmc.api.optout import mask
from cmc.placeholders import fill
from cmc.store import tables
from cmc.store.database import Database
from cmc.web import Look, render
from support import REGISTRY, Api, Lifespan, apply_registry, make_settings
from test_qr import matrix_image, svg_modules

BASE = "http://cmc.test"
LOGO = "https://cdn.example/green-leaf.svg"
MARKETING = {
    "branding": {"name": "Green Leaf Co.", "logoUrl": LOGO,
                 "colors": {"primary": "#2f7d4f", "background": "#f2f7f0", "text": "#1c2b22"}},
    "widgets": [
        {"id": 1, "name": "Digital Coupons", "landingUrl": "https://example.com/coupon?c={code}",
         "title": "10% off your next visit"},
    ],
    "cfsTemplates": [
        {"id": 7, "name": "Thank you", "thanks": "Thanks, {firstName}!", "slides": [
            {"title": "Welcome", "body": "Fresh every week"},
            {"title": "Slide two", "body": "Ask about our loyalty card"},
        ]},
        {"id": 8, "name": "Tricky", "thanks": "<i>{firstName}</i>, thank you", "displaySeconds": 3,
         "slides": [{"title": "{{ 7 * 7 }} <b>bold</b> {companyName}", "body": "<script>alert(1)</script>"}]},
    ],
}  # fmt: skip
"""comp5's marketing set-up: its branding, a widget and two CFS templates (no rules)."""


def registry_with_marketing(tmp_path: Path, marketing: dict[str, Any] = MARKETING) -> Path:
    """The test registry with comp5's marketing filled in, and a Blue Door (comp6) terminal ``term5``.

    Terminal ids are unique per location only: Blue Door's loc6 has a ``term5`` too, with a screen.
    """
    data = yaml.safe_load(REGISTRY.read_text())
    [comp5] = [c for pos in data["posSystems"] for c in pos["companies"] if c["id"] == "comp5"]
    [comp6] = [c for pos in data["posSystems"] for c in pos["companies"] if c["id"] == "comp6"]
    comp5.update(marketing)
    comp6["locations"].append(
        {"id": "loc6", "name": "Blue Door Pier", "timezone": "Europe/Paris", "country": "FR",
         "terminals": [{"id": "term5", "cfs": True}]}
    )  # fmt: skip
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
async def branded(tmp_path: Path, database_url: str) -> AsyncIterator[Api]:
    """The app over the registry whose comp5 is branded (on each backend)."""
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
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
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
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    html = answer.text
    assert "&lt;b&gt;Tea&lt;/b&gt; time" in html and "<b>Tea" not in html
    assert f"{BASE}/s/{code}" in html
    assert decode_svg(inline_svg(html)) == f"{BASE}/s/{code}"


async def test_qr_page_and_preview_wear_the_company_look(branded: Api) -> None:
    code = await add_link(branded)
    for path in (f"/qr/{code}", f"/qr/{code}/preview"):
        html = (await branded.http.get(path)).text
        assert "Green Leaf Co." in html and f'<img src="{LOGO}" alt="">' in html, path
        assert "--primary: #2f7d4f" in html and "--bg: #f2f7f0" in html and "--text: #1c2b22" in html, path
        assert '"Noto Sans CJK SC"' in html and '"Noto Color Emoji"' in html, path


async def test_a_page_without_branding_has_sensible_defaults(api: Api) -> None:
    html = (await api.http.get(f"/qr/{await add_link(api)}")).text
    assert "Green Leaf" in html  # the company's own name
    assert "--primary: #1f6f5c" in html and "<img" not in html
    assert 'font-family: system-ui, -apple-system, "Segoe UI"' in html  # no &#34; inside the style sheet


def test_a_hostile_company_name_is_text_on_every_page() -> None:
    look = Look(name='<script>alert("x")</script>', logo_url='https://x.test/" onerror="alert(1)')
    pages = {
        "qr.html": {"title": "t", "svg": ""},
        "qr_preview.html": {"title": "t", "svg": "", "short_url": "u"},
        "message.html": {"heading": "h", "lines": [], "confirm": None},
        "cfs.html": {
            "slides": [],
            "config": {"templates": {}, "current": "0", "intervalMs": 1, "events": "/"},
        },
        "email.html": {"subject": "s", "paragraphs": [], "footer": []},
    }
    for template, context in pages.items():
        html = render(template, look=look, nonce="n", **context)
        assert "<script>alert" not in html and '" onerror="' not in html, template
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html, template


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
        # Every value known (the parsed fast path): spacing tidied as when one is missing.
        ("  Hi  {firstName},  {lastName}  ", {"firstName": "Ada", "lastName": "L"}, "Hi Ada, L"),
        ("{firstName}{lastName}", {"firstName": "{lastName}", "lastName": "x"}, "{lastName}x"),
        ("Hi {firstName}!", {"firstName": "A\x00da"}, "Hi Ada!"),
    ],
)
def test_fill(text: str, values: dict[str, str], shown: str) -> None:
    assert fill(text, values) == shown


def test_mask() -> None:
    assert mask("ada@example.com") == "a••@example.com"
    assert mask("+14155550100") == "••••••••0100"


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


async def test_a_plain_get_asks_and_changes_nothing(branded: Api) -> None:
    """Mail scanners and link previews fetch links nobody clicked: a GET only shows the question."""
    await add_message(branded, token="tok-1")
    for _ in range(2):
        answer = await branded.http.get("/u/tok-1")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert answer.headers["cache-control"] == "no-store"
        html = answer.text
        assert "Unsubscribe from Green Leaf?" in html and "a••@example.com" in html and "emails" in html
        assert '<form method="post">' in html and 'id="confirm"' in html
        assert "Green Leaf Co." in html and "--primary: #2f7d4f" in html  # the merchant's look
    assert await count_opt_outs(branded) == 0


async def test_the_pages_button_opts_out_once(branded: Api) -> None:
    await add_message(branded, token="tok-1")
    await add_message(branded, token="tok-2")  # another message to the same contact
    for token in ("tok-1", "tok-1", "tok-2"):
        answer = await branded.http.post(f"/u/{token}")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "You are unsubscribed" in answer.text and "a••@example.com" in answer.text
        assert "Green Leaf Co." in answer.text
        assert await count_opt_outs(branded) == 1
    row = await fetch_one(branded, select(tables.opt_outs))
    assert (row.pos_system_id, row.company_id, row.channel, row.recipient) == (
        "pax",
        "comp5",
        "email",
        "ada@example.com",
    )
    # Asked again, the page says so instead of offering the button.
    again = (await branded.http.get("/u/tok-1")).text
    assert "already receives no emails from Green Leaf" in again and "<form" not in again


async def test_one_click_unsubscribe_post(api: Api) -> None:
    await add_message(api, token="tok-sms", channel="sms", recipient="+14155550100")
    answer = await api.http.post("/u/tok-sms", content=b"List-Unsubscribe=One-Click",
                                 headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status_code == 200 and "text messages" in answer.text
    assert await count_opt_outs(api) == 1


async def test_unknown_opt_out_token_is_a_404_page(api: Api) -> None:
    for answer in (await api.http.get("/u/nope"), await api.http.post("/u/nope")):
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "not valid" in answer.text and "<form" not in answer.text
    assert await count_opt_outs(api) == 0
