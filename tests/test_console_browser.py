"""The merchant console in a real headless Chromium (Debian's) against a real uvicorn server.

A publisher signs in, watches the overview's numbers and chart follow the tenders a POS posts, writes
a draft, simulates it on those sales and publishes it; a viewer gets no publish button and a 403 when
posting anyway; another company's user sees none of it. No request leaves the machine: the console's
scripts are CMC's own files (no CDN), and the page's CSP would refuse anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from playwright.async_api import Browser, Page

from support import MERCHANT_SECRETS, basic_of, seed_transaction
from test_cfs_browser import CHROMIUM, Server, chromium, watch_errors
from test_console import BASE, USERS, console_registry

__all__ = ["chromium"]  # the browser fixture, shared with the screens' browser tests
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (make chromium)"),
]
DESKTOP = {"width": 1280, "height": 800}


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[Server]:
    with Server(tmp_path, database_url, registry=console_registry(tmp_path)) as running:
        yield running


async def signed_in(chromium: Browser, server: Server, who: str, *, base: str = BASE) -> Page:
    """A fresh browser (its own cookies) signed in as ``who``, through the login form."""
    context = await chromium.new_context(viewport=DESKTOP)  # type: ignore[arg-type]
    page = await context.new_page()
    await page.goto(server.url + base)
    await page.wait_for_url(re.compile(r"/login\?next="))
    email, password = USERS[who]
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await page.wait_for_url(server.url + base)
    return page


async def chart_total(page: Page, canvas: str) -> int:
    total: int = await page.evaluate(
        "id => Chart.getChart(document.getElementById(id)).data.datasets[0].data.reduce((a, b) => a + b, 0)",
        canvas,
    )
    return total


async def test_a_publisher_sees_sales_arrive_then_drafts_simulates_and_publishes(
    server: Server, chromium: Browser
) -> None:
    page = await signed_in(chromium, server, "publisher")
    problems = watch_errors(page)
    assert await page.text_content("#tenders") == "0"
    assert await page.is_visible("#no-sales")
    assert await chart_total(page, "activity-chart") == 0

    now = datetime.now(UTC).isoformat(timespec="seconds")  # the overview counts a sale by its own time
    for n in range(3):
        customer = {"id": f"browser-{n}", "firstName": f"Shopper {n}"}
        await server.tender(seed_transaction(customer=customer, transactionDate=now))
    await page.click("#refresh")  # (the overview also refreshes itself every 30 s)
    await page.wait_for_function("() => document.getElementById('tenders').textContent === '3'", timeout=5000)
    # The swapped-in part is drawn right after htmx settles it.
    await page.wait_for_function(
        "() => (c => c !== undefined && c.data.datasets[0].data.reduce((a, b) => a + b, 0) === 3)"
        "(Chart.getChart(document.getElementById('activity-chart')))",
        timeout=5000,
    )
    assert not await page.is_visible("#no-sales")
    assert int(await page.text_content("#firings") or "0") >= 3  # the seed's sale fires the coupon rule

    await page.click("nav >> text=Versions")
    await page.click("#new-draft")
    document = await page.input_value("#document")
    await page.fill("#document", document.replace('"50"', '"80"'))
    await page.fill("input[name=note]", "coupon up to 80")
    await page.click("#draft button[type=submit]")
    await page.wait_for_url(f"{server.url}{BASE}/versions/2")
    assert await page.text_content("#status") == "draft"

    await page.click("#simulate button[type=submit]")
    await page.wait_for_selector("#simulation-rules tr[data-rule='mid-basket coupon']", timeout=15000)
    summary = await page.text_content("#simulation-summary") or ""
    assert "3 sales" in summary

    await page.click("#publish button[type=submit]")
    await page.wait_for_selector("#notice")
    assert await page.text_content("#status") == "active"
    assert problems == []


async def test_a_viewer_cannot_publish_and_another_company_sees_nothing(
    server: Server, chromium: Browser
) -> None:
    async with httpx2.AsyncClient(base_url=server.url) as http:  # a draft, through the merchant API
        token = await http.post(
            "/connect/token",
            headers={"Authorization": basic_of("gl-editor", MERCHANT_SECRETS["gl-editor"])},
            data={"grant_type": "client_credentials", "scope": "merchant"},
        )
        auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
        live = await http.get("/v1/pos/pax/companies/comp5/marketing", headers=auth)
        body = {"document": live.json()["data"]["document"], "note": "from the API"}
        assert (
            await http.post("/v1/pos/pax/companies/comp5/marketing/versions", json=body, headers=auth)
        ).status_code == 201

    viewer = await signed_in(chromium, server, "viewer")
    await viewer.goto(f"{server.url}{BASE}/versions/2")
    assert await viewer.text_content("#status") == "draft"
    assert await viewer.query_selector("#publish") is None
    assert await viewer.query_selector("#simulate") is None
    status = await viewer.evaluate(
        """async url => {
            const csrf = document.querySelector("input[name=_csrf]").value;
            const form = new URLSearchParams({_csrf: csrf, if_match: "1"});
            return (await fetch(url, {method: "POST", body: form})).status;
        }""",
        f"{BASE}/versions/2/publish",
    )
    assert status == 403
    problems = watch_errors(viewer)
    await viewer.reload()
    assert await viewer.text_content("#status") == "draft"
    assert problems == []

    other = await signed_in(chromium, server, "blue door", base="/console/pax/comp6")
    assert "Blue Door" in (await other.text_content(".top") or "")
    for path in ("", "/versions", "/versions/2", "/customers", "/audit"):
        answer = await other.goto(f"{server.url}{BASE}{path}")
        assert answer is not None
        assert answer.status == 404, path
        text = await other.content()
        assert "Green Leaf" not in text
        assert "from the API" not in text
