"""The README's pictures: the customer-facing screen (idle, and during a sale), the QR page, the preview,
and the merchant console (login, overview, rules, a simulated draft, a customer, messages, a tablet).

Run ``make screenshots`` (or ``.venv/bin/python docs/screenshots.py [--out DIR]``). It applies
``examples/demo.yaml`` to a temporary SQLite database, starts a real ``cmc serve``, pairs terminal
term5's screen with ``cmc screens url``, makes the sale of the README's curl session (the demo rules
answer it with a coupon QR), and photographs each page with Debian's chromium through Playwright.
For the console it makes a dozen more sales, then signs in as the demo's publisher through the form.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
CMC = Path(sys.executable).parent / "cmc"
CHROMIUM = "/usr/bin/chromium"
SCREEN = {"width": 1280, "height": 720}
"""A customer-facing screen: a 16:9 display by the till."""
PREVIEW = {"width": 440, "height": 136}
"""The small box a POS shows the cashier."""
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}
"""A tablet held upright (an iPad Air's CSS pixels)."""
CONSOLE = "/console/pax/comp5"
PUBLISHER = ("pat@greenleaf.example", "battery staple")
"""The demo's console publisher (examples/demo.yaml)."""
SHOPPERS = [("Grace", "Hopper", 31.50), ("Alan", "Turing", 12.25), ("Edsger", "Dijkstra", 44.0),
            ("Barbara", "Liskov", 27.80), ("Donald", "Knuth", 65.10), ("Frances", "Allen", 18.9)]  # fmt: skip
"""Who shops for the console's pictures: (first name, last name, amount)."""
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
)
SALE = {
    "transactionId": f"screenshot-{int(time.time())}",
    "terminalId": "term5",
    "posLocationId": "loc5",
    "transactionType": "Sale",
    "transactionAmount": 23.47,
    "customer": {
        "id": "c-42",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "contacts": [{"email": "ada@example.com"}],
    },
    "products": [{"productId": "p-1", "productName": "Gummies", "productCategory": "Edibles", "quantity": 2}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cmc(*args: str, env: dict[str, str]) -> str:
    command = [str(CMC), *args]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"cmc {' '.join(args)} failed: {done.stderr}")
    return done.stdout.strip()


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """``cmc apply examples/demo.yaml`` then ``cmc serve`` on a fresh database; yields (URL, env)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
    env.update(CMC_DATABASE_URL=f"sqlite:///{folder}/cmc.db", CMC_PUBLIC_URL=url, CMC_LOG_LEVEL="warning")
    cmc("apply", "examples/demo.yaml", env=env)
    serve = [str(CMC), "serve", "--port", str(port)]
    process = subprocess.Popen(serve, env=env, cwd=ROOT, start_new_session=True)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("cmc serve did not start")
            time.sleep(0.1)
        yield url, env
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)


async def sell(url: str, sale: dict[str, Any] = SALE) -> dict[str, str]:
    """The curl session's tender, by a POS: token, startInteraction, transaction; the QR widget's URLs."""
    async with httpx2.AsyncClient(base_url=url, timeout=10) as http:
        token = await http.post(
            "/connect/token",
            auth=("pax-demo", "s3cr3t!"),
            data={"grant_type": "client_credentials", "scope": "pos_integration"},
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        where = {"terminalId": sale["terminalId"], "posLocationId": sale["posLocationId"]}
        session = await http.post("/pos/pax/startInteraction", json=where, headers=headers)
        body = {**sale, "sessionId": session.json()["data"]["sessionId"]}
        answer = await http.post("/pos/pax/transaction", json=body, headers=headers)
    answer.raise_for_status()
    widget: dict[str, str] = answer.json()["data"]["qrCodeWidget"]
    return widget


async def shop(url: str) -> None:
    """A morning of sales at both stores, from the demo's shoppers (the console's data)."""
    for n, (first, last, amount) in enumerate(SHOPPERS * 2):
        email = f"{first.lower()}@example.com"
        sale = {
            **SALE,
            "transactionId": f"{SALE['transactionId']}-{n}",
            "transactionAmount": amount + n,
            "customer": {"id": f"c-{first.lower()}", "firstName": first, "lastName": last,
                         "contacts": [{"email": email, "phone": f"(415) 555-01{n % 6:02d}"}]},
        }  # fmt: skip
        if n % 3 == 2:
            sale.update(terminalId="term8", posLocationId="loc6")
        widget = await sell(url, sale)
        if widget and n % 2 == 0:  # half the shoppers scan their QR with their phone
            async with httpx2.AsyncClient(timeout=10) as http:
                await http.get(widget["shortLinkUrl"], headers={"User-Agent": PHONE})


async def console(browser: Browser, url: str, out: Path) -> list[Path]:
    """The merchant console, signed in as the demo's publisher through its login form."""
    shots = []
    page = await browser.new_page(viewport=DESKTOP)  # type: ignore[arg-type]
    await page.goto(url + CONSOLE)
    await page.wait_for_selector("#login")
    email, password = PUBLISHER
    await page.fill("input[name=email]", email)
    await page.fill("input[name=password]", password)
    shots.append(out / "console-login.png")
    await page.screenshot(path=shots[-1])
    await page.click("#login button[type=submit]")
    await page.wait_for_selector("#activity-chart")
    await settle(page)
    shots.append(out / "console-overview.png")
    await page.screenshot(path=shots[-1])

    await page.goto(f"{url}{CONSOLE}/rules")
    shots.append(out / "console-rules.png")
    await page.screenshot(path=shots[-1])

    await page.goto(f"{url}{CONSOLE}/draft")
    document = await page.input_value("#document")
    await page.fill("#document", document.replace('"50"', '"80"'))
    await page.fill("input[name=note]", "coupon up to 80")
    await page.click("#draft button[type=submit]")
    await page.wait_for_selector("#simulate")
    await page.click("#simulate button[type=submit]")
    await page.wait_for_selector("#simulation-rules")
    shots.append(out / "console-draft.png")
    await page.screenshot(path=shots[-1])

    await page.goto(f"{url}{CONSOLE}/customers?query=ada@example.com")
    await page.click("#customers a")
    await page.wait_for_selector("#timeline")
    shots.append(out / "console-customer.png")
    await page.screenshot(path=shots[-1])

    await page.goto(f"{url}{CONSOLE}/messages")
    shots.append(out / "console-messages.png")
    await page.screenshot(path=shots[-1])

    await page.set_viewport_size(TABLET)  # type: ignore[arg-type]
    await page.goto(url + CONSOLE)
    await page.wait_for_selector("#activity-chart")
    await settle(page)
    shots.append(out / "console-tablet.png")
    await page.screenshot(path=shots[-1])
    return shots


async def settle(page: Page) -> None:
    """Let images decode and the fade-in animations end."""
    await page.wait_for_function("[...document.images].every(i => i.complete)")
    await page.wait_for_timeout(900)


async def photograph(url: str, screen_url: str, out: Path) -> list[Path]:
    shots = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport=SCREEN)  # type: ignore[arg-type]
            await page.goto(screen_url)
            await page.wait_for_selector("body[data-feed=ready][data-state=idle]")
            await settle(page)
            shots.append(out / "cfs-idle.png")
            await page.screenshot(path=shots[-1])

            widget = await sell(url)
            await page.wait_for_selector("#sale img.qr", state="visible")
            await settle(page)
            shots.append(out / "cfs-sale.png")
            await page.screenshot(path=shots[-1])

            qr = await browser.new_page(viewport=SCREEN)  # type: ignore[arg-type]
            await qr.goto(widget["qrCodeHtmlLinkUrl"])
            await settle(qr)
            shots.append(out / "qr-page.png")
            await qr.screenshot(path=shots[-1])

            preview = await browser.new_page(viewport=PREVIEW)  # type: ignore[arg-type]
            await preview.goto(widget["qrCodePreviewLinkUrl"])
            await settle(preview)
            shots.append(out / "qr-preview.png")
            await preview.screenshot(path=shots[-1])

            await shop(url)
            shots += await console(browser, url, out)
        finally:
            await browser.close()
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder, serving(Path(folder)) as (url, env):
        screen_url = cmc(
            "screens", "url", "--pos-system", "pax", "--location", "loc5", "--terminal", "term5", env=env
        )
        for shot in asyncio.run(photograph(url, screen_url, args.out)):
            print(shot)


if __name__ == "__main__":
    main()
