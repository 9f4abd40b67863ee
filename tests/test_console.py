"""The merchant console against the real app, on both engines (no browser): signing in and out, the
session cookie, CSRF, roles on drafts, simulation and publishing, and tenant isolation on every path."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml
from litestar import Litestar

from cmc import console_session
from cmc.outbox import Dispatcher
from support import MERCHANTS, Api, ManualClock, apply_registry, seed_transaction
from test_outbox_senders import sms_server

BASE = "/console/pax/comp5"
ORIGIN = {"Origin": "http://cmc.test"}
USERS = {
    "viewer": ("vic@greenleaf.example", "view only!"),
    "editor": ("Ann@GreenLeaf.example", "correct horse"),  # tests/merchants.yaml's console user
    "publisher": ("pam@greenleaf.example", "publish it!"),
    "blue door": ("bob@bluedoor.example", "blue d00r!"),
    "clover": ("cleo@other.example", "cl0v3r!!"),
}


def console_registry(folder: Path, *, publisher_password: str = USERS["publisher"][1]) -> Path:
    """tests/merchants.yaml with a viewer and a publisher at Green Leaf and a user at each other company."""
    spec = yaml.safe_load(MERCHANTS.read_text())
    pax, clover = spec["posSystems"]
    green, blue = pax["companies"]
    green["users"] += [
        {"email": USERS["viewer"][0], "password": USERS["viewer"][1], "role": "viewer"},
        {"email": USERS["publisher"][0], "password": publisher_password, "role": "publisher"},
    ]
    blue["users"] = [{"email": USERS["blue door"][0], "password": USERS["blue door"][1], "role": "publisher"}]
    clover["companies"][0]["users"] = [
        {"email": USERS["clover"][0], "password": USERS["clover"][1], "role": "publisher"}
    ]
    path = folder / f"console-{publisher_password.replace(' ', '-')}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class Browser:
    """A browser's view of the console: its own cookie jar, the CSRF token of the page it last read."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=api.app), base_url="http://cmc.test"
        )
        self.csrf = ""

    async def login(self, who: str, *, base: str = BASE) -> httpx2.Response:
        email, password = USERS[who]
        answer = await self.http.post(
            f"{base}/login", data={"email": email, "password": password}, headers=ORIGIN
        )
        assert answer.status_code == 303, answer.text
        return answer

    async def get(self, path: str, **kw: Any) -> httpx2.Response:
        answer = await self.http.get(path, **kw)
        found = re.search(r'name="_csrf" value="([0-9a-f]+)"', answer.text)
        if found:
            self.csrf = found.group(1)
        return answer

    async def post(self, path: str, data: dict[str, str] | None = None, **kw: Any) -> httpx2.Response:
        headers = {**ORIGIN, **kw.pop("headers", {})}
        return await self.http.post(path, data={"_csrf": self.csrf, **(data or {})}, headers=headers, **kw)

    @property
    def session(self) -> str | None:
        return self.http.cookies.get(console_session.COOKIE)


@pytest.fixture
async def console(api_factory: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Api]:
    async with api_factory(registry=console_registry(tmp_path)) as api:
        yield api


async def signed_in(api: Api, who: str) -> Browser:
    browser = Browser(api)
    await browser.login(who)
    await browser.get(BASE + "/versions")
    return browser


def problem(page: httpx2.Response) -> str:
    found = re.search(r'id="problem">([^<]*)<', page.text)
    return found.group(1) if found else ""


# --- signing in -----------------------------------------------------------------------------------


async def test_login_gives_a_session_cookie_with_its_flags(console: Api) -> None:
    browser = Browser(console)
    form = await browser.get(BASE + "/login")
    assert form.status_code == 200
    assert "text/html" in form.headers["content-type"]
    answer = await browser.login("editor")
    assert answer.headers["location"] == BASE
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{console_session.COOKIE}=")
    flags = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")[1:]}
    assert "httponly" in flags
    assert flags["samesite"].strip().lower() == "samesite=lax"
    assert flags["path"].strip() == "Path=/console"
    assert flags["max-age"].strip() == "Max-Age=3600"  # the token's lifetime, CMC_TOKEN_TTL_SECONDS
    assert "secure" not in flags  # http://cmc.test: a Secure cookie would never come back
    page = await browser.get(BASE)
    assert page.status_code == 200
    assert "ann@greenleaf.example" in page.text
    assert "Green Leaf" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


async def test_the_cookie_is_secure_behind_https(api_factory: Callable[..., Any], tmp_path: Path) -> None:
    async with api_factory(registry=console_registry(tmp_path), public_url="https://cmc.example") as api:
        browser = Browser(api)
        email, password = USERS["editor"]
        answer = await browser.http.post(
            f"{BASE}/login",
            data={"email": email, "password": password},
            headers={"Origin": "https://cmc.example"},
        )
        assert answer.status_code == 303, answer.text
        assert "secure" in answer.headers["set-cookie"].lower()


async def test_a_wrong_password_and_an_unknown_email_get_the_same_answer(console: Api) -> None:
    browser = Browser(console)
    answers = [
        await browser.http.post(f"{BASE}/login", data=form, headers=ORIGIN)
        for form in (
            {"email": USERS["editor"][0], "password": "wrong"},
            {"email": "nobody@greenleaf.example", "password": "wrong"},
            {"email": USERS["blue door"][0], "password": USERS["blue door"][1]},  # another company's user
        )
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert {problem(a) for a in answers} == {"Wrong email or password."}
    nonce = re.compile(r'nonce(?:="|-)[^"\';]+')
    assert len({nonce.sub("", a.text) for a in answers}) == 1
    assert browser.session is None


async def test_too_many_failed_logins_get_a_friendly_429(
    api_factory: Callable[..., Any], tmp_path: Path
) -> None:
    # A frozen clock: failed logins count in fixed windows, and none may end mid-test.
    async with api_factory(
        registry=console_registry(tmp_path), auth_failures_per_client=2, clock=ManualClock()
    ) as api:
        browser = Browser(api)
        form = {"email": USERS["editor"][0], "password": "wrong"}
        statuses = [
            (await browser.http.post(f"{BASE}/login", data=form, headers=ORIGIN)).status_code
            for _ in range(2)
        ]
        refused = await browser.http.post(f"{BASE}/login", data=form, headers=ORIGIN)
        assert statuses == [401, 401]
        assert refused.status_code == 429
        assert refused.headers["retry-after"].isdigit()
        assert "text/html" in refused.headers["content-type"]
        assert problem(refused).startswith("Too many attempts to sign in.")


async def test_after_login_the_page_asked_for_opens(console: Api) -> None:
    browser = Browser(console)
    away = await browser.get(BASE + "/audit")
    assert away.status_code == 303
    assert away.headers["location"] == f"{BASE}/login?next={BASE}/audit"
    email, password = USERS["viewer"]
    form = {"email": email, "password": password, "next": f"{BASE}/audit"}
    answer = await browser.http.post(f"{BASE}/login", data=form, headers=ORIGIN)
    assert answer.headers["location"] == f"{BASE}/audit"
    for elsewhere in ("https://evil.example/", "//evil.example", "/console/pax/comp6", f"{BASE}/../comp6"):
        form["next"] = elsewhere
        answer = await browser.http.post(f"{BASE}/login", data=form, headers=ORIGIN)
        assert answer.headers["location"] == BASE, elsewhere


async def test_without_a_session_pages_redirect_and_actions_are_401(console: Api) -> None:
    browser = Browser(console)
    page = await browser.get(BASE + "/versions")
    assert page.status_code == 303
    assert page.headers["location"].startswith(f"{BASE}/login")
    htmx = await browser.get(BASE + "/versions", headers={"HX-Request": "true"})
    assert htmx.status_code == 401
    assert htmx.headers["hx-redirect"] == f"{BASE}/login"
    action = await browser.post(BASE + "/draft", {"document": "{}"})
    assert action.status_code == 401
    browser.http.cookies.set(console_session.COOKIE, "not-a-token", path="/console")
    forged = await browser.get(BASE)
    assert forged.status_code == 303


async def test_the_landing_page_leads_to_a_companys_login(console: Api) -> None:
    landing = await console.http.get("/console")
    assert landing.status_code == 200
    assert 'name="company"' in landing.text
    answer = await console.http.get("/console", params={"pos": "pax", "company": "comp/5?x"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/pax/comp%2F5%3Fx/login"
    # The login form of a company that does not exist is the same page as Green Leaf's.
    nonce = re.compile(r'nonce(?:="|-)[^"\';]+')
    pages = [(await console.http.get(f"/console/pax/{c}/login")).text for c in ("comp5", "comp0")]
    assert nonce.sub("", pages[0]).replace("comp5", "") == nonce.sub("", pages[1]).replace("comp0", "")
    assert "Green Leaf" not in pages[0]


# --- CSRF -----------------------------------------------------------------------------------------


async def test_actions_need_the_sessions_csrf_token_and_our_origin(console: Api) -> None:
    browser = await signed_in(console, "editor")
    page = await browser.get(BASE + "/draft")
    document = re.search(r"<textarea[^>]*>(.*?)</textarea>", page.text, re.S)
    assert document is not None
    import html

    form = {"document": html.unescape(document.group(1)), "note": "csrf"}
    refused = [
        await browser.http.post(BASE + "/draft", data=form, headers=ORIGIN),  # no token
        await browser.http.post(BASE + "/draft", data={**form, "_csrf": "0" * 64}, headers=ORIGIN),
        await browser.post(BASE + "/draft", form, headers={"Origin": "https://evil.example"}),
        await browser.http.post(
            BASE + "/draft", data={**form, "_csrf": browser.csrf}
        ),  # no Origin, no Referer
        await browser.post(
            BASE + "/draft", form, headers={"Origin": "null", "Referer": "https://evil.example/x"}
        ),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    before = (await browser.get(BASE + "/versions")).text.count("/versions/")
    saved = await browser.post(BASE + "/draft", form)
    assert saved.status_code == 303, saved.text
    # A Referer of ours stands in for an Origin (a browser that sends none, or "null").
    again = await browser.post(
        BASE + "/draft", form, headers={"Origin": "null", "Referer": f"http://cmc.test{BASE}/draft"}
    )
    assert again.status_code == 303
    # The htmx header carries the token as well as the form field does.
    header = await browser.http.post(
        BASE + "/draft", data=form, headers={**ORIGIN, "X-CSRF-Token": browser.csrf, "HX-Request": "true"}
    )
    assert header.status_code == 303
    assert (await browser.get(BASE + "/versions")).text.count("/versions/") == before + 3


async def test_a_login_from_another_site_is_refused(console: Api) -> None:
    email, password = USERS["editor"]
    answer = await console.http.post(
        f"{BASE}/login",
        data={"email": email, "password": password},
        headers={"Origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert "set-cookie" not in answer.headers


# --- the session ends -----------------------------------------------------------------------------


async def test_logout_ends_the_session(console: Api) -> None:
    browser = await signed_in(console, "viewer")
    assert browser.session
    out = await browser.post(BASE + "/logout")
    assert out.status_code == 303
    assert out.headers["location"] == f"{BASE}/login"
    assert browser.session is None
    after = await browser.get(BASE)
    assert after.status_code == 303
    assert after.headers["location"].startswith(f"{BASE}/login")


async def test_a_copy_of_the_cookie_taken_before_logout_is_refused_too(console: Api) -> None:
    browser = await signed_in(console, "publisher")
    copied = browser.session
    assert copied
    thief = Browser(console)
    thief.http.cookies.set(console_session.COOKIE, copied, path="/console")
    assert (await thief.get(BASE)).status_code == 200
    assert (await browser.post(BASE + "/logout")).status_code == 303
    page = await thief.get(BASE)
    assert page.status_code == 303
    assert page.headers["location"].startswith(f"{BASE}/login")
    # The session's token is refused on the merchant API as well, and a new sign-in works.
    api = await thief.http.get(
        f"/v1/pos/{BASE.split('/')[2]}/companies/{BASE.split('/')[3]}/marketing",
        headers={"Authorization": f"Bearer {copied}"},
    )
    assert api.status_code == 401
    again = await signed_in(console, "publisher")
    assert (await again.get(BASE)).status_code == 200


async def test_a_changed_password_ends_the_session(console: Api, tmp_path: Path) -> None:
    browser = await signed_in(console, "publisher")
    assert (await browser.get(BASE)).status_code == 200
    changed = console_registry(tmp_path, publisher_password="a new one!")
    await asyncio.to_thread(apply_registry, console.settings, changed)
    for _ in range(100):  # the registry reaches this process within CMC_REGISTRY_REFRESH_SECONDS
        answer = await browser.get(BASE)
        if answer.status_code != 200:
            break
        await asyncio.sleep(0.05)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith(f"{BASE}/login")


# --- roles: drafts, simulation, publishing --------------------------------------------------------


async def draft(browser: Browser, text: str) -> httpx2.Response:
    await browser.get(BASE + "/draft")
    return await browser.post(BASE + "/draft", {"document": text, "note": "wider band"})


async def active_document(browser: Browser) -> str:
    import html

    page = await browser.get(BASE + "/versions/1")
    found = re.search(r'<pre class="document" id="document">(.*?)</pre>', page.text, re.S)
    assert found is not None
    return html.unescape(found.group(1))


async def test_an_editor_drafts_and_simulates_but_may_not_publish(console: Api) -> None:
    editor = await signed_in(console, "editor")
    text = (await active_document(editor)).replace('"50"', '"80"')
    assert '"80"' in text
    saved = await draft(editor, text)
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == f"{BASE}/versions/2"
    page = await editor.get(BASE + "/versions/2")
    assert 'id="status">draft<' in page.text
    assert 'id="publish"' not in page.text
    simulated = await editor.post(BASE + "/versions/2/simulate", {"days": "30"})
    assert simulated.status_code == 200, simulated.text
    assert 'id="simulation-rules"' in simulated.text
    assert 'data-rule="mid-basket coupon"' in simulated.text
    refused = await editor.post(BASE + "/versions/2/publish", {"if_match": "1"})
    assert refused.status_code == 403
    assert "text/html" in refused.headers["content-type"]


async def test_a_viewer_sees_no_publish_button_and_gets_403(console: Api) -> None:
    editor = await signed_in(console, "editor")
    assert (await draft(editor, await active_document(editor))).status_code == 303
    viewer = await signed_in(console, "viewer")
    page = await viewer.get(BASE + "/versions/2")
    assert page.status_code == 200
    assert 'id="publish"' not in page.text
    assert 'id="simulate"' not in page.text
    assert (await viewer.post(BASE + "/versions/2/publish", {"if_match": "1"})).status_code == 403
    assert (await viewer.post(BASE + "/versions/2/simulate", {"days": "30"})).status_code == 403
    assert (await viewer.get(BASE + "/draft")).status_code == 403
    assert (await viewer.post(BASE + "/draft", {"document": "{}"})).status_code == 403
    assert 'id="status">draft<' in (await viewer.get(BASE + "/versions/2")).text


async def test_a_publisher_publishes_with_the_version_the_page_showed(console: Api) -> None:
    publisher = await signed_in(console, "publisher")
    assert (await draft(publisher, await active_document(publisher))).status_code == 303
    assert (await draft(publisher, await active_document(publisher))).status_code == 303
    page = await publisher.get(BASE + "/versions/2")
    assert 'name="if_match" value="1"' in page.text
    done = await publisher.post(BASE + "/versions/2/publish", {"if_match": "1"})
    assert done.status_code == 303
    assert done.headers["location"] == f"{BASE}/versions/2?published=1"
    assert 'id="status">active<' in (await publisher.get(done.headers["location"])).text
    # A page opened while version 1 was live: publishing from it is refused (the API's 412).
    stale = await publisher.post(BASE + "/versions/3/publish", {"if_match": "1"})
    assert stale.status_code == 412
    assert "Someone published another version" in problem(stale)
    audit = await publisher.get(BASE + "/audit")
    assert "user:pam@greenleaf.example" in audit.text
    assert "console" in audit.text


def submission_of(page: httpx2.Response, form: str) -> str:
    found = re.search(rf'id="{form}".*?name="_submission" value="([^"]+)"', page.text, re.S)
    assert found is not None, f"the {form} form carries no submission key"
    return found.group(1)


async def test_a_form_sent_twice_changes_the_company_once(console: Api) -> None:
    """A double click on Save or Publish (or a browser resending a slow POST) makes one change."""
    publisher = await signed_in(console, "publisher")
    text = await active_document(publisher)
    form = await publisher.get(BASE + "/draft")
    key = submission_of(form, "draft")
    assert key != submission_of(await publisher.get(BASE + "/draft"), "draft")  # new at every render
    sent = {"document": text, "note": "once", "_submission": key}
    first, second = await asyncio.gather(*(publisher.post(BASE + "/draft", sent) for _ in range(2)))
    assert (first.status_code, second.status_code) == (303, 303), (first.text, second.text)
    assert first.headers["location"] == second.headers["location"] == f"{BASE}/versions/2"
    assert (await publisher.get(BASE + "/versions/3")).status_code == 404
    # The same key with another document is another request: refused, nothing saved.
    other = await publisher.post(BASE + "/draft", {**sent, "note": "another"})
    assert other.status_code == 422
    assert (await publisher.get(BASE + "/versions/3")).status_code == 404

    page = await publisher.get(BASE + "/versions/2")
    publish = {"if_match": "1", "_submission": submission_of(page, "publish")}
    for _ in range(2):  # the second finds version 2 live, yet answers as the first did
        done = await publisher.post(BASE + "/versions/2/publish", publish)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{BASE}/versions/2?published=1"
    actions = re.findall(r"<td>(draft|activate)</td>", (await publisher.get(BASE + "/audit")).text)
    assert sorted(actions) == ["activate", "draft"], actions


async def test_an_invalid_draft_names_each_problem_by_field(console: Api) -> None:
    editor = await signed_in(console, "editor")
    text = (await active_document(editor)).replace('"15"', '"90"', 1)
    refused = await draft(editor, text)
    assert refused.status_code == 400
    assert "rules[0].when.all[0].amount.between" in refused.text
    assert "90" in refused.text  # the editor keeps what was typed
    broken = await draft(editor, "{not json")
    assert broken.status_code == 400
    assert "not JSON" in broken.text
    assert "1 problem" not in broken.text


async def test_the_rules_page_says_why_a_lift_is_not_there_yet(console: Api) -> None:
    for _ in range(2):
        assert (await console.tender()).status_code == 200
    publisher = await signed_in(console, "publisher")
    page = await publisher.get(BASE + "/rules")
    assert page.status_code == 200
    row = re.search(r'<tr data-rule="mid-basket coupon">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert ">1<" in row.group(1) or ">2<" in row.group(1)  # its firings (a limit of one a week per customer)
    assert "No holdout: set <code>holdoutPercent</code>" in row.group(1)
    text = (await active_document(publisher)).replace(
        '"priority": 10,', '"priority": 10, "holdoutPercent": 10,'
    )
    assert (await draft(publisher, text)).status_code == 303
    await publisher.get(BASE + "/versions/2")
    assert (await publisher.post(BASE + "/versions/2/publish", {"if_match": "1"})).status_code == 303
    page = await publisher.get(BASE + "/rules")
    row = re.search(r'<tr data-rule="mid-basket coupon">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert "Not enough customers yet: too few customers to measure" in row.group(1)
    assert "holdout 10%" in row.group(1)


# --- what the marketing did ----------------------------------------------------------------------


async def test_the_day_windows_are_whole_days(api_factory: Callable[..., Any], tmp_path: Path) -> None:
    """A "7 days" window is today and the six days before it, from midnight UTC: a sale early on the first day
    counts (a window from this time of day, six days ago, dropped it); one the evening before does not."""
    clock = ManualClock(datetime(2026, 12, 2, 19, 0, tzinfo=UTC))
    async with api_factory(registry=console_registry(tmp_path), dispatcher=False, clock=clock) as api:
        for at in ("2026-11-26T00:30:00+00:00", "2026-11-25T23:30:00+00:00"):
            assert (await api.tender(seed_transaction(transactionDate=at))).status_code == 200
        viewer = await signed_in(api, "viewer")
        assert 'id="tenders">1<' in (await viewer.get(BASE + "?period=7d")).text
        assert 'id="tenders">2<' in (await viewer.get(BASE + "?period=30d")).text
        assert 'id="tenders">0<' in (await viewer.get(BASE + "?period=today")).text


async def test_the_pages_show_what_was_posted(api_factory: Callable[..., Any], tmp_path: Path) -> None:
    """Two sales that fire the coupon (each an email, sent, and an SMS the provider refuses: dead)."""
    # A fixed daytime clock: at night in Los Angeles the SMS would wait for the store's quiet hours
    # to end (queued, not dead), and the test failed whenever it ran between 05:00 and 16:00 UTC.
    clock = ManualClock(datetime(2026, 12, 2, 19, 0, tzinfo=UTC))
    with sms_server(400) as provider:
        registry = console_registry(tmp_path)
        async with api_factory(
            registry=registry, dispatcher=False, sms_url=provider.url(), clock=clock
        ) as api:
            now = clock.now.isoformat()
            for n, name in enumerate(("Ada", "Grace")):
                contacts = [{"email": f"{name.lower()}@example.com", "phone": f"(415) 555-010{n}"}]
                customer = {"id": f"c-{n}", "firstName": name, "lastName": "Shopper", "contacts": contacts}
                body = seed_transaction(
                    transactionDate=now, customer=customer, loyalty={"cardNumber": f"L-{n}"}
                )
                assert (await api.tender(body)).status_code == 200
            outbox = Dispatcher(api.db(), api.settings, clock=clock)
            await outbox.run_once()
            await outbox.stop()
            clock.advance(minutes=1)  # the pages' windows end at now, excluded: the sales are before it

            viewer = await signed_in(api, "viewer")
            overview = await viewer.get(BASE + "?period=today")
            assert 'id="tenders">2<' in overview.text
            assert 'id="firings">4<' in overview.text  # the coupon and "edibles fan", twice
            assert 'id="no-sales"' not in overview.text
            assert "data-series=" in overview.text

            found = await viewer.get(BASE + "/customers", params={"query": "grace@example.com"})
            link = re.search(rf'href="({BASE}/customers/[^"]+)">Grace Shopper<', found.text)
            assert link is not None, found.text
            timeline = await viewer.get(link.group(1))
            assert timeline.status_code == 200
            assert "mid-basket coupon" in timeline.text
            assert "EMAIL sent" in timeline.text
            assert "SMS dead" in timeline.text
            assert (await viewer.get(f"{BASE}/customers/no-such-profile")).status_code == 404

            dead = await viewer.get(BASE + "/messages", params={"state": "dead"})
            ids = re.findall(r'data-message="([^"]+)"', dead.text)
            assert len(ids) == 2
            assert "http-400" in dead.text
            assert "Thanks Ada! Your coupon:" in dead.text
            assert "Retry</button>" not in dead.text
            assert (await viewer.post(f"{BASE}/messages/{ids[0]}/retry")).status_code == 403

            editor = await signed_in(api, "editor")
            assert "Retry</button>" in (await editor.get(BASE + "/messages?state=dead")).text
            retried = await editor.post(f"{BASE}/messages/{ids[0]}/retry", {"back": "state=dead"})
            assert retried.status_code == 303
            assert retried.headers["location"] == f"{BASE}/messages?state=dead&retried={ids[0]}"
            queued = await editor.get(BASE + "/messages", params={"state": "queued"})
            assert re.findall(r'data-message="([^"]+)"', queued.text) == [ids[0]]
            again = await editor.post(f"{BASE}/messages/{ids[0]}/retry")  # no longer dead
            assert again.status_code == 409
            assert "text/html" in again.headers["content-type"]

            optouts = await viewer.get(BASE + "/optouts")
            assert 'id="optouts">0<' in optouts.text
            assert 'id="optout-list"' not in optouts.text
            email = await viewer.get(BASE + "/messages", params={"channel": "email"})
            link = re.search(r"/u/([A-Za-z0-9_-]+)", email.text)
            assert link is not None
            assert (await api.http.post(f"/u/{link[1]}")).status_code == 200  # the shopper opts out
            clock.advance(seconds=1)
            optouts = await viewer.get(BASE + "/optouts")
            assert 'id="optouts">1<' in optouts.text
            listed = re.search(r'<table class="table" id="optout-list">(.*?)</table>', optouts.text, re.S)
            assert listed is not None
            assert listed.group(1).count("<tr>") == 2  # the heading and the one opt-out
            assert "example.com" in listed.group(1)
            # One contact's opt-outs, typed as a person would (case, spaces): found; another: none.
            recipient = re.search(r"<td>(email|sms)</td><td><a [^>]*>([^<]+)</a>", listed.group(1))
            assert recipient is not None
            typed = f"  {recipient.group(2).upper()} "
            found = await viewer.get(BASE + "/optouts", params={"contact": typed})
            one = re.search(r'<table class="table" id="optout-list">(.*?)</table>', found.text, re.S)
            assert one is not None and one.group(1).count("<tr>") == 2, found.text
            none = await viewer.get(BASE + "/optouts", params={"contact": "nobody@example.org"})
            assert 'id="optout-none"' in none.text and 'id="optout-list"' not in none.text
            assert (await viewer.get(BASE + "/rules")).status_code == 200


# --- tenants --------------------------------------------------------------------------------------


def console_paths(app: Litestar) -> list[tuple[str, str]]:
    """Every (method, path template) of a company's console, from the app itself (so none is missed)."""
    found = []
    for route in app.routes:
        if not route.path.startswith("/console/{pos_system_id"):
            continue
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            found.append((method, route.path))
    return found


PUBLIC = {("GET", "/console/{pos_system_id:str}/{company_id:str}/login"),
          ("POST", "/console/{pos_system_id:str}/{company_id:str}/login")}  # fmt: skip


def fill(template: str, company: str) -> str:
    values = {
        "pos_system_id": "pax",
        "company_id": company,
        "version": "1",
        "profile_id": "p-1",
        "message_id": "m-1",
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)


async def test_every_console_path_is_404_to_another_companys_user(console: Api) -> None:
    app: Litestar = console.app.app
    paths = console_paths(app)
    assert len(paths) >= 15
    assert set(paths) >= PUBLIC
    for who in ("blue door", "clover"):
        other = Browser(console)
        own = "/console/pax/comp6" if who == "blue door" else "/console/clover/comp7"
        await other.login(who, base=own)
        assert (await other.get(own + "/versions")).status_code == 200  # its own console works
        for method, template in paths:
            if (method, template) in PUBLIC:
                continue
            for company in ("comp5", "no-such-company"):
                path = fill(template, company)
                if method == "GET":
                    answer = await other.http.get(path)
                else:
                    answer = await other.post(path, {"document": "{}", "if_match": "1", "days": "7"})
                assert answer.status_code == 404, (who, method, path, answer.status_code)
                assert "Green Leaf" not in answer.text
                assert "comp5" not in answer.text.replace(path, "")


async def test_static_files_are_served_with_a_long_cache(console: Api) -> None:
    for path in (
        "/console/static/vendor/chart.js-4.6.1/chart.umd.min.js",
        "/console/static/vendor/htmx.org-2.0.11/htmx.min.js",
        "/console/static/console.js",
        "/console/static/console.css",
    ):
        answer = await console.http.get(path)
        assert answer.status_code == 200, path
        assert "max-age=31536000" in answer.headers["cache-control"]
        assert "immutable" in answer.headers["cache-control"]
    for licence in ("chart.js-4.6.1/LICENSE.md", "htmx.org-2.0.11/LICENSE"):
        assert (await console.http.get(f"/console/static/vendor/{licence}")).status_code == 200
    page = await (await signed_in(console, "viewer")).get(BASE)
    assert "/console/static/vendor/chart.js-4.6.1/chart.umd.min.js" in page.text
    assert re.search(r"/console/static/console\.js\?v=[0-9a-f]{12}", page.text)
