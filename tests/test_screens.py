"""Customer-facing screens on the real app: pairing tokens, the page, the states its stream sends, the
carousel call, ``cmc screens``, and the live feed behind them.

The registry is test_pages' marketing one: comp5 (Green Leaf, branded) with templates 7 and 8 at
loc5 (term5, term6), and comp6 (Blue Door) whose loc6 has a terminal ``term5`` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import insert

from cmc import cfs_feed, cli, screen_state, screens
from cmc.cfs_feed import CfsEvent, CfsFeed, Subscription
from cmc.registry import snapshot
from cmc.screens import Screen
from cmc.store import meta, tables
from support import Api, ManualClock, apply_registry, make_settings, seed_transaction
from test_pages import BASE, MARKETING, HasDb, add_link, is_problem, registry_with_marketing, write

GREEN_LEAF = Screen("pax", "loc5", "term5")
BLUE_DOOR = Screen("pax", "loc6", "term5")
"""Another merchant's terminal with the same id, at another location."""


@pytest.fixture
def cfs_factory(api_factory: Callable[..., Any], tmp_path: Path) -> Callable[..., Any]:
    """The app over the marketing registry (on each backend), with a clock of the test's choosing."""

    def start(clock: ManualClock | None = None, *, marketing: dict[str, Any] = MARKETING) -> Any:
        return api_factory(clock=clock, registry=registry_with_marketing(tmp_path, marketing))

    return start


@pytest.fixture
async def cfs_api(cfs_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    async with cfs_factory() as api:
        yield api


async def screen_token(api: HasDb, screen: Screen = GREEN_LEAF) -> str:
    """The screen's current pairing token, as a freshly loaded registry snapshot has it."""
    db = api.db()
    try:
        directory = await db.read(snapshot.load)
    finally:
        await db.close()
    location = directory.locations[(screen.pos_system_id, screen.location_id)]
    return location.screen_tokens[screen.terminal_id]


def sale(
    code: str | None = None,
    *,
    title: str = "10% off",
    first_name: str | None = "Ada",
    template: int | None = 7,
) -> dict[str, Any]:
    """A sale's CFS event payload, as marketing writes it."""
    return screen_state.sale_payload(
        first_name=first_name, code=code, title=title if code else None, template_id=template
    )


async def add_event(
    api: HasDb, payload: dict[str, Any], *, screen: Screen = GREEN_LEAF, at: datetime | None = None
) -> int:
    row = {**screen._asdict(), "payload": payload, "created_at": at or datetime.now(UTC)}
    result = await write(api, lambda conn: conn.execute(insert(tables.cfs_events).values(row)))
    return int(result.inserted_primary_key[0])


def config_of(html: str) -> dict[str, Any]:
    found = re.search(r'id="cfs-config">(.*?)</script>', html, re.S)
    assert found, "no CFS config in the page"
    config: dict[str, Any] = json.loads(found[1])
    return config


class Sse:
    """A raw ASGI GET on the app, read as a server-sent event stream (httpx's ASGI transport buffers)."""

    def __init__(self, app: Any, path: str) -> None:
        self.app = app
        self.path, _, self.query = path.partition("?")
        self.start: dict[str, Any] = {}
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._buffer = b""
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sse:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": self.path, "raw_path": self.path.encode(),
            "query_string": self.query.encode(), "headers": [(b"host", b"cmc.test")],
            "server": ("cmc.test", 80), "client": ("127.0.0.1", 1234), "root_path": "", "state": {},
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
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                self._chunks.put_nowait(b"")  # the stream ended

        self._task = asyncio.create_task(self.app(scope, receive, send))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        assert self._task is not None
        await asyncio.wait_for(self._task, 5)

    async def next(self, wait: float = 5.0) -> dict[str, str]:
        """The next event (or comment) as its fields; EOFError when the stream ended."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = await asyncio.wait_for(self._chunks.get(), wait)
            if not chunk:
                raise EOFError("the stream ended")
            self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        fields: dict[str, str] = {}
        for line in block.decode().split("\r\n"):
            name, _, value = line.partition(": ")
            fields[name] = fields[name] + "\n" + value if name in fields else value
        return fields

    async def state(self, wait: float = 5.0) -> dict[str, Any]:
        """The next ``state`` event's data (keep-alive comments skipped)."""
        while (event := await self.next(wait)).get("event") != "state":
            pass
        shown: dict[str, Any] = json.loads(event["data"])
        return shown


async def drain(stream: Sse) -> None:
    """Read until the stream ends (EOFError) or is silent for 6 s (TimeoutError)."""
    while True:
        await stream.next(wait=6)


def feed_of(api: Api) -> CfsFeed:
    feed: CfsFeed = api.app.app.state.services.feed
    return feed


# --- pairing --------------------------------------------------------------------------------------


def test_a_token_is_unguessable_and_names_one_screen_and_generation() -> None:
    key = "k" * 43
    first = screens.token(key, GREEN_LEAF, 0)
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", first)
    others = {
        screens.token(key, BLUE_DOOR, 0),
        screens.token(key, Screen("pax", "loc5", "term6"), 0),
        screens.token(key, Screen("clover", "loc5", "term5"), 0),
        screens.token(key, GREEN_LEAF, 1),
        screens.token("other key", GREEN_LEAF, 0),
    }
    assert first not in others and len(others) == 5
    assert screens.token(key, GREEN_LEAF, 0) == first  # stable: every process computes the same
    assert (
        screens.page_url("https://cmc.example/", first, template_id=7)
        == f"https://cmc.example/cfs/{first}?template=7"
    )


async def test_every_cfs_terminal_has_a_screen_and_no_other(cfs_api: Api) -> None:
    directory = cfs_api.app.app.state.services.directory.current
    paired = set(directory.screens.values())
    assert {GREEN_LEAF, BLUE_DOOR, Screen("pax", "loc5", "term6")} <= paired
    assert Screen("pax", "loc9", "term9") not in paired  # registered with cfs: false
    assert all(s.pos_system_id == "pax" or s.terminal_id != "term9" for s in paired)
    tokens = [loc.screen_tokens[t] for loc in directory.locations.values() for t in loc.screen_tokens]
    assert len(set(tokens)) == len(tokens) == len(directory.screens)
    assert await screen_token(cfs_api) == directory.locations[("pax", "loc5")].screen_tokens["term5"]


# --- the page -------------------------------------------------------------------------------------


async def test_the_page_shows_the_idle_slides_in_the_company_look(cfs_api: Api) -> None:
    token = await screen_token(cfs_api)
    answer = await cfs_api.http.get(f"/cfs/{token}?template=7&interval=2")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["cache-control"] == "no-store"
    html = answer.text
    assert "<h1>Welcome</h1>" in html and "Slide two" in html  # the idle slides ...
    assert "Thanks" not in html and "Ada" not in html  # ... and nothing of any sale
    assert 'data-state="idle"' in html
    assert "Green Leaf" in html and "--primary: #2f7d4f" in html  # the company's branding
    assert '"Noto Sans CJK SC"' in html and '"Noto Color Emoji"' in html  # fallbacks for any name
    config = config_of(html)
    assert config["current"] == "7" and config["intervalMs"] == 2000
    assert config["events"] == f"/cfs/{token}/events?template=7"  # pinned: the stream knows it
    assert set(config["templates"]) == {"7", "8"}
    csp = answer.headers["content-security-policy"]
    assert "frame-ancestors" not in csp and "x-frame-options" not in answer.headers
    nonce = re.search(r"'nonce-([^']+)'", csp)[1]  # type: ignore[index]
    assert f'<script nonce="{nonce}">' in html


async def test_the_page_defaults(cfs_api: Api) -> None:
    token = await screen_token(cfs_api, Screen("pax", "loc5", "term6"))
    html = (await cfs_api.http.get(f"/cfs/{token}?template=999&interval=abc")).text
    config = config_of(html)
    assert config["current"] == "7"  # an unknown template: the company's first one, not pinned
    assert config["events"] == f"/cfs/{token}/events" and config["intervalMs"] == 6000
    setup = cfs_api.app.app.state.services.directory.current.companies[("pax", "comp5")].setup
    for odd in ("9" * 5000, "-7", "٣", "7.0", "1e400"):  # the page and its stream read these: never a 500
        assert (await cfs_api.http.get(f"/cfs/{token}?template={odd}&interval={odd}")).status_code == 200, odd
        assert screen_state.screen_template(setup, odd) == (setup.cfs_templates[7], False), odd


async def test_without_the_credential_there_is_nothing(cfs_api: Api) -> None:
    """A made-up, old-style or cfs: false URL is a 404 that names no screen, page and stream alike."""
    key = await write(cfs_api, lambda conn: meta.get(conn, screens.KEY))
    no_screen = screens.token(key, Screen("pax", "loc9", "term9"), 0)  # what term9's would be
    for path in ("/cfs/nope", "/cfs/pax/term5", f"/cfs/{no_screen}", "/cfs/" + "A" * 24):
        for suffix in ("", "/events"):
            answer = await cfs_api.http.get(path + suffix)
            is_problem(answer, 404)
            assert "term" not in answer.json()["detail"] and "loc" not in answer.json()["detail"], path


async def test_a_company_without_templates_says_welcome(api: Api) -> None:
    token = await screen_token(api)
    answer = await api.http.get(f"/cfs/{token}")
    assert answer.status_code == 200
    assert "<h1>Welcome</h1>" in answer.text


async def test_merchant_text_is_data_not_template_code(cfs_api: Api) -> None:
    html = (await cfs_api.http.get(f"/cfs/{await screen_token(cfs_api)}?template=8")).text
    assert "<h1>{{ 7 * 7 }} &lt;b&gt;bold&lt;/b&gt; Green Leaf</h1>" in html
    assert ">49<" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html


# --- the states the stream sends -----------------------------------------------------------------


async def test_the_stream_sends_the_current_state_then_each_sale_of_this_screen(cfs_api: Api) -> None:
    token = await screen_token(cfs_api)
    code = await add_link(cfs_api)
    async with Sse(cfs_api.app, f"/cfs/{token}/events") as stream:
        ready = await stream.next()
        assert stream.start["status"] == 200
        assert dict(stream.start["headers"])[b"content-type"].startswith(b"text/event-stream")
        assert ready["event"] == "ready" and ready["retry"] == "2000"
        assert await stream.state() == {"state": "idle", "template": "7"}  # a never-used screen
        assert feed_of(cfs_api).subscriber_count == 1
        # Another merchant's terminal of the same id, and another terminal here: nothing shows.
        await add_event(cfs_api, sale(code, first_name="Bob"), screen=BLUE_DOOR)
        await add_event(cfs_api, sale(code, first_name="Eve"), screen=Screen("pax", "loc5", "term6"))
        await add_event(cfs_api, sale(code, title="10% off <today>"))
        shown = await stream.state(wait=3)
        assert 44_000 < shown.pop("ms") <= 45_000
        assert shown == {
            "state": "sale", "template": "7", "thanks": "Thanks, Ada!", "title": "10% off <today>",
            "qr": f"{BASE}/qr/{code}.svg",
        }  # fmt: skip
        with pytest.raises(TimeoutError):
            await stream.state(wait=1.5)  # Bob's and Eve's sales never come here
    await asyncio.sleep(0.05)
    assert feed_of(cfs_api).subscriber_count == 0


async def test_a_reconnecting_screen_gets_the_state_it_should_be_in_now(
    cfs_factory: Callable[..., Any],
) -> None:
    clock = ManualClock(datetime(2026, 11, 26, 18, 0, tzinfo=UTC))
    async with cfs_factory(clock) as api:
        token = await screen_token(api)
        code = await add_link(api)
        await add_event(api, sale(code), at=clock.now)

        async def current() -> dict[str, Any]:
            async with Sse(api.app, f"/cfs/{token}/events") as stream:
                return await stream.state()

        assert (await current())["ms"] == 45_000
        clock.advance(seconds=40)
        shown = await current()
        assert (shown["state"], shown["thanks"], shown["ms"]) == ("sale", "Thanks, Ada!", 5_000)
        clock.advance(seconds=5)
        assert await current() == {"state": "idle", "template": "7"}  # the display time is over

        # A sale where no rule chose a QR: a short thank-you, then idle.
        await add_event(api, sale(first_name="Grace", template=None), at=clock.now)
        shown = await current()
        assert shown == {"state": "sale", "template": "7", "thanks": "Thanks, Grace!", "title": None,
                         "qr": None, "ms": screen_state.THANKS_SECONDS * 1000}  # fmt: skip
        clock.advance(seconds=screen_state.THANKS_SECONDS)
        assert (await current())["state"] == "idle"

        # An anonymous sale thanks nobody by name.
        await add_event(api, sale(code, first_name=None), at=clock.now)
        assert (await current())["thanks"] == "Thanks!"


async def test_display_time_comes_from_the_template(cfs_factory: Callable[..., Any]) -> None:
    clock = ManualClock(datetime(2026, 11, 26, 18, 0, tzinfo=UTC))
    async with cfs_factory(clock) as api:
        token = await screen_token(api)
        code = await add_link(api)
        await add_event(api, sale(code, template=8), at=clock.now)  # template 8 shows a sale for 3 s
        async with Sse(api.app, f"/cfs/{token}/events") as stream:
            shown = await stream.state()
        assert (shown["template"], shown["thanks"], shown["ms"]) == ("8", "<i>Ada</i>, thank you", 3_000)
        # A screen pinned to template 7 stays on it, and on its display time.
        async with Sse(api.app, f"/cfs/{token}/events?template=7") as stream:
            shown = await stream.state()
        assert (shown["template"], shown["thanks"], shown["ms"]) == ("7", "Thanks, Ada!", 45_000)


async def test_rotating_ends_the_open_stream_and_the_old_url(cfs_api: Api) -> None:
    old = await screen_token(cfs_api)
    async with Sse(cfs_api.app, f"/cfs/{old}/events") as stream:
        assert (await stream.state())["state"] == "idle"
        db = cfs_api.db()
        try:
            assert await db.write(screens.rotate, GREEN_LEAF, now=datetime.now(UTC)) == 1
        finally:
            await db.close()
        with pytest.raises(EOFError):  # within the registry refresh (1 s) and one check (1 s)
            await drain(stream)
    new = await screen_token(cfs_api)
    assert new != old
    is_problem(await cfs_api.http.get(f"/cfs/{old}"), 404)
    is_problem(await cfs_api.http.get(f"/cfs/{old}/events"), 404)
    assert (await cfs_api.http.get(f"/cfs/{new}")).status_code == 200
    assert await screen_token(cfs_api, BLUE_DOOR) != old  # the other screens keep their URLs


# --- a real sale reaches its screen --------------------------------------------------------------

RULES = [{"name": "coupon", "when": {"amount": {"gte": 20}}, "then": {"qrWidget": 1, "cfsTemplate": 7}}]


async def test_a_tender_reaches_its_screen(cfs_factory: Callable[..., Any]) -> None:
    async with cfs_factory(marketing={**MARKETING, "rules": RULES}) as api:
        token = await screen_token(api)
        async with Sse(api.app, f"/cfs/{token}/events") as stream:
            assert (await stream.state())["state"] == "idle"
            answer = await api.tender()  # 23.47: the rule fires
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            assert data["cfsTemplate"] == {
                "accountTemplateId": 7,
                "cfsCarouselUrl": f"{BASE}/cfs/{token}?template=7",
            }
            code = data["qrCodeWidget"]["shortLinkUrl"].rsplit("/", 1)[1]
            shown = await stream.state(wait=3)
            assert (shown["thanks"], shown["title"], shown["qr"]) == (
                "Thanks, Ada!", "10% off your next visit", f"{BASE}/qr/{code}.svg",
            )  # fmt: skip
            # No rule fires for 5.00: the screen thanks the shopper, briefly, without a QR.
            assert (await api.tender(seed_transaction(transactionAmount=5))).status_code == 200
            shown = await stream.state(wait=3)
            assert (shown["state"], shown["thanks"], shown["qr"]) == ("sale", "Thanks, Ada!", None)
            assert 4000 < shown["ms"] <= screen_state.THANKS_SECONDS * 1000


# --- the carousel call (ClearLine 2.7) -----------------------------------------------------------


async def test_the_carousel_call_answers_the_screen_url(cfs_api: Api) -> None:
    token = await screen_token(cfs_api)
    for path in ("/v2/pos/pax/carousel", "/V2/Pos/pax/Carousel"):
        answer = await cfs_api.post(path, {"posLocationId": "loc5", "terminalId": "term5"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"data": {"url": f"{BASE}/cfs/{token}"}}
    other = await cfs_api.post("/v2/pos/pax/carousel", {"posLocationId": "loc6", "terminalId": "term5"})
    assert other.json()["data"]["url"] == f"{BASE}/cfs/{await screen_token(cfs_api, BLUE_DOOR)}"


async def test_the_carousel_call_refuses_what_has_no_screen(cfs_api: Api) -> None:
    async def carousel(body: Any, *, pos: str = "pax", path_pos: str = "pax") -> httpx2.Response:
        return await cfs_api.post(f"/v2/pos/{path_pos}/carousel", body, pos=pos)

    is_problem(await carousel({"posLocationId": "loc9", "terminalId": "term9"}), 404)  # cfs: false
    is_problem(await carousel({"posLocationId": "loc5", "terminalId": "nope"}), 404)
    is_problem(await carousel({"posLocationId": "nope", "terminalId": "term5"}), 404)
    is_problem(await carousel({"posLocationId": "loc5"}), 400)
    is_problem(await carousel({"posLocationId": "", "terminalId": "term5"}), 400)
    is_problem(await carousel([1]), 400)
    # Another tenant gets nothing: its own path does not know pax's locations, pax's path refuses it.
    is_problem(
        await carousel({"posLocationId": "loc5", "terminalId": "term5"}, pos="clover", path_pos="clover"), 404
    )
    is_problem(await carousel({"posLocationId": "loc5", "terminalId": "term5"}, pos="clover"), 403)
    is_problem(await cfs_api.http.post("/v2/pos/pax/carousel", json={"posLocationId": "loc5"}), 401)


# --- cmc screens ----------------------------------------------------------------------------------


def test_cmc_screens_prints_rotates_and_lists(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, database_url=database_url)
    apply_registry(settings, registry_with_marketing(tmp_path))
    monkeypatch.setenv("CMC_DATABASE_URL", database_url)
    monkeypatch.setenv("CMC_PUBLIC_URL", "https://cmc.example")
    where = ["--pos-system", "pax", "--location", "loc5", "--terminal", "term5"]
    capsys.readouterr()

    assert cli.main(["screens", "url", *where]) == 0
    url = capsys.readouterr().out.strip()
    assert re.fullmatch(r"https://cmc\.example/cfs/[A-Za-z0-9_-]{24}", url)
    assert cli.main(["screens", "url", *where]) == 0
    assert capsys.readouterr().out.strip() == url  # the same until rotated

    assert cli.main(["screens", "rotate", *where]) == 0
    rotated = capsys.readouterr().out.strip()
    assert rotated != url and rotated.startswith("https://cmc.example/cfs/")
    assert cli.main(["screens", "url", *where]) == 0
    assert capsys.readouterr().out.strip() == rotated

    assert cli.main(["screens", "list", "--pos-system", "pax"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert f"pax/loc5/term5  {rotated}" in listed and len(listed) == 3
    assert any(line.startswith("pax/loc6/term5  https://cmc.example/cfs/") for line in listed)

    assert (
        cli.main(["screens", "url", "--pos-system", "pax", "--location", "loc9", "--terminal", "term9"]) == 2
    )
    assert "pax/loc9/term9: no customer-facing screen (the terminal is registered with cfs: false)" in (
        capsys.readouterr().err
    )
    assert (
        cli.main(["screens", "rotate", "--pos-system", "pax", "--location", "loc5", "--terminal", "x"]) == 2
    )
    assert "pax/loc5/x: no customer-facing screen (the terminal is not registered)" in capsys.readouterr().err


# --- the live feed --------------------------------------------------------------------------------


async def test_feed_starts_after_existing_events_and_fills_gaps(cfs_api: Api) -> None:
    """No replay at start-up; an id committed after a higher one (PostgreSQL) still goes out, once."""
    old = await add_event(cfs_api, {"n": 0})

    def add(n: int) -> Callable[[Any], Any]:
        row = {"id": old + n, **GREEN_LEAF._asdict(), "payload": {"n": n}, "created_at": datetime.now(UTC)}
        return lambda conn: conn.execute(insert(tables.cfs_events).values(row))

    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))  # rounds only when the test asks
    await feed.start()
    try:
        assert feed.last_id == old
        with feed.subscribe(GREEN_LEAF) as sub:
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


async def test_the_feed_keys_screens_by_location(cfs_api: Api) -> None:
    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))
    await feed.start()
    try:
        with feed.subscribe(GREEN_LEAF) as green, feed.subscribe(BLUE_DOOR) as blue:
            await add_event(cfs_api, {"n": "blue"}, screen=BLUE_DOOR)
            await feed.poll()
            assert (await blue.next(1)).payload == {"n": "blue"}  # type: ignore[union-attr]
            assert await green.next(0.3) is None
    finally:
        await feed.stop()
        await db.close()


def test_a_slow_subscriber_drops_its_oldest_events() -> None:
    sub = Subscription(GREEN_LEAF, size=2)
    for n in range(5):
        sub.offer(CfsEvent(n, GREEN_LEAF, {"n": n}, datetime.now(UTC)))
    assert sub.dropped == 3
    got = [sub._queue.get_nowait().payload["n"] for _ in range(2)]
    assert got == [3, 4]


async def test_a_wake_with_no_screen_connected_reads_nothing(cfs_api: Api) -> None:
    """Every QR sale NOTIFYs every process; one with no screen open has nothing to push."""
    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))
    await feed.start()
    try:
        await asyncio.sleep(0.05)  # the first round has run; the next is an hour away
        before = feed.last_id
        await add_event(cfs_api, {"n": 1})
        feed.wake()
        await asyncio.sleep(0.05)
        assert feed.last_id == before  # no round ran
        with feed.subscribe(GREEN_LEAF) as sub:
            feed.wake()
            event = await sub.next(2)
            assert event is not None and event.payload == {"n": 1}  # the next round still finds it
    finally:
        await feed.stop()
        await db.close()


async def test_a_page_that_subscribes_during_an_idle_round_still_gets_the_event(cfs_api: Api) -> None:
    """A round with no subscriber moves past the newest event only if still nobody listens."""
    db = cfs_api.db()

    class SubscribingDuringRead:
        """The store, with a page subscribing while the feed reads the newest id."""

        def __init__(self) -> None:
            self.pages = contextlib.ExitStack()
            self.page: Subscription | None = None

        async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
            found = await db.read(fn, *args, **kwargs)
            if fn is cfs_feed.latest_id and self.page is None:
                self.page = self.pages.enter_context(feed.subscribe(GREEN_LEAF))
            return found

    store = SubscribingDuringRead()
    feed = CfsFeed(store, poll=timedelta(hours=1))  # type: ignore[arg-type]
    try:
        with store.pages:
            await add_event(cfs_api, {"n": 1})
            assert await feed.poll() == 0  # nobody had subscribed when the round began
            assert feed.last_id == 0  # but a page did meanwhile: the round keeps its place
            assert store.page is not None
            assert await feed.poll() == 1
            event = await store.page.next(1)
            assert event is not None and event.payload == {"n": 1}
    finally:
        await db.close()


async def test_wake_polls_at_once(cfs_api: Api) -> None:
    db = cfs_api.db()
    feed = CfsFeed(db, poll=timedelta(hours=1))
    await feed.start()
    try:
        with feed.subscribe(GREEN_LEAF) as sub:
            await asyncio.sleep(0.05)  # the first round has run; the next is an hour away
            await add_event(cfs_api, {"n": 1})
            feed.wake()
            assert await sub.next(2) is not None
    finally:
        await feed.stop()
        await db.close()
