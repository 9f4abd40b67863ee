"""What a malicious or broken merchant client sends, on both engines: each is the client's error
(400 or 404, naming the field), never a 500, and nothing of it is stored.

NUL anywhere in a marketing document (PostgreSQL refuses it in JSON: every sale matching the rule
would have failed), digits that are not ASCII, times at the ends of the calendar, URLs that break
a header, and the console's forms.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cmc import console_session
from cmc.api.services import Services
from support import MERCHANTS, Api
from test_console import BASE as CONSOLE
from test_console import ORIGIN, active_document, console_registry, draft, signed_in
from test_merchant_api import BASE, Merchant


@pytest.fixture
async def merchant(api_factory: Callable[..., Any]) -> AsyncIterator[Merchant]:
    async with api_factory(registry=MERCHANTS) as api:
        yield Merchant(api)


@pytest.fixture
async def console(api_factory: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Api]:
    async with api_factory(registry=console_registry(tmp_path)) as api:
        yield api


async def versions_stored(merchant: Merchant) -> int:
    return len((await merchant.call("GET", f"{BASE}/marketing/versions")).json()["data"])


# --- NUL and URLs in a document -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (lambda d: d["messageTemplates"][0].update(body="Hi\x00"), "messageTemplates[0].body"),
        (lambda d: d["rules"][0].update(name="coupon\x00"), "rules[0].name"),
        (lambda d: d["branding"].update({"x\x00": 1}), "branding.x\x00"),
        (lambda d: d["rules"][0]["when"]["all"][0].update({"amount": {"gte": "1\x00"}}), "amount.gte"),
    ],
    ids=["a value", "a rule name", "a key", "deep in a condition"],
)
async def test_a_nul_anywhere_in_a_draft_is_400_and_nothing_is_stored(
    merchant: Merchant, where: Callable[[dict[str, Any]], None], field: str
) -> None:
    document = await merchant.document()
    where(document)
    answer = await merchant.call(
        "POST", f"{BASE}/marketing/versions", who="gl-editor", json={"document": document}
    )
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert any(field in path and "NUL" in messages[0] for path, messages in errors.items()), errors
    assert await versions_stored(merchant) == 1


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a b", "https://example.com/\r\nSet-Cookie: x=1", "https://example.com/\t",
     "http://[::1/coupon", "https://exa\x7fmple.com/"],
)  # fmt: skip
async def test_a_landing_url_that_would_break_the_redirect_is_400(merchant: Merchant, url: str) -> None:
    document = await merchant.document()
    document["widgets"][0]["landingUrl"] = url
    answer = await merchant.call(
        "POST", f"{BASE}/marketing/versions", who="gl-editor", json={"document": document}
    )
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["errors"]) == {"widgets[0].landingUrl"}, answer.text


async def test_an_image_url_with_an_unclosed_bracket_is_400(merchant: Merchant) -> None:
    document = await merchant.document()
    document["cfsTemplates"][0]["slides"][0]["imageUrl"] = "https://[::1/logo.png"
    answer = await merchant.call(
        "POST", f"{BASE}/marketing/versions", who="gl-editor", json={"document": document}
    )
    assert answer.status_code == 400, answer.text
    assert set(answer.json()["errors"]) == {"cfsTemplates[0].slides[0].imageUrl"}, answer.text


# --- numbers that are not plain ASCII digits ------------------------------------------------------


# Superscript two, Arabic-Indic one, mathematical bold one: isdigit() holds for each.
@pytest.mark.parametrize("spelling", ["²", "\u0661", "\U0001d7cf", "1²", " 1"])
async def test_a_version_is_named_by_ascii_digits_only(merchant: Merchant, spelling: str) -> None:
    assert (await merchant.call("GET", f"{BASE}/marketing/versions/1")).status_code == 200
    answer = await merchant.call("GET", f"{BASE}/marketing/versions/{spelling}")
    assert answer.status_code == 404, answer.text
    tag: Any = f'"{spelling}"'.encode()  # as a client sends it: UTF-8 bytes
    activated = await merchant.call(
        "POST", f"{BASE}/marketing/versions/1/activate", headers={"If-Match": tag}
    )
    assert activated.status_code == 412, activated.text  # it names no version: the page was stale


@pytest.mark.parametrize("spelling", ["²", "٣"])
async def test_other_digits_in_a_cursor_or_a_count_are_400(merchant: Merchant, spelling: str) -> None:
    audit = await merchant.call("GET", f"{BASE}/audit", params={"cursor": spelling})
    assert audit.status_code == 400, audit.text
    assert "cursor" in audit.json()["errors"]
    lift = await merchant.call("GET", f"{BASE}/rules/mid-basket coupon/lift", params={"days": spelling})
    assert lift.status_code == 400, lift.text
    assert "days" in lift.json()["errors"]


# --- times at the ends of the calendar ------------------------------------------------------------

EDGES = ["0001-01-01T00:00:00Z", "0001-01-02T00:00:00+00:00", "9999-12-31T23:59:59Z", "1969-12-31T00:00:00Z"]


@pytest.mark.parametrize("at", EDGES)
@pytest.mark.parametrize("name", ["from", "to"])
async def test_a_window_outside_the_years_is_400_naming_it(merchant: Merchant, at: str, name: str) -> None:
    paths = [
        f"{BASE}/analytics/summary",
        f"{BASE}/analytics/timeseries?metric=tenders&bucket=day",
        f"{BASE}/analytics/timeseries?metric=tenders&bucket=hour",
        f"{BASE}/rules/mid-basket coupon/lift",
    ]
    for path in paths:
        answer = await merchant.call("GET", path, params={name: at})
        assert answer.status_code == 400, (path, answer.text)
        assert name in answer.json()["errors"], (path, answer.text)
    simulated = await merchant.call(
        "POST", f"{BASE}/marketing/versions/1/simulate", who="gl-editor", json={name: at}
    )
    assert simulated.status_code == 400, simulated.text
    assert name in simulated.json()["errors"], simulated.text


async def test_a_lift_window_that_ends_before_it_starts_is_400(merchant: Merchant) -> None:
    answer = await merchant.call(
        "GET",
        f"{BASE}/rules/mid-basket coupon/lift",
        params={"from": "2026-10-20T00:00:00Z", "to": "2026-10-10T00:00:00Z"},
    )
    assert answer.status_code == 400, answer.text
    assert "from" in answer.json()["errors"]


# --- the console's forms --------------------------------------------------------------------------


async def test_a_nul_in_a_console_form_is_a_400_page(console: Api) -> None:
    editor = await signed_in(console, "editor")
    text = await active_document(editor)
    await editor.get(CONSOLE + "/draft")
    answer = await editor.post(CONSOLE + "/draft", {"document": text, "note": "wider\x00band"})
    assert answer.status_code == 400, answer.text
    assert "text/html" in answer.headers["content-type"]
    assert "NUL" in answer.text
    in_document = await draft(editor, text.replace('"mid-basket coupon"', '"mid-basket\\u0000coupon"'))
    assert in_document.status_code == 400, in_document.text
    assert "NUL" in in_document.text
    listing = await editor.get(CONSOLE + "/versions")
    assert "/versions/2" not in listing.text  # nothing stored


async def test_a_draft_nested_too_deeply_is_a_problem_on_the_page(console: Api) -> None:
    editor = await signed_in(console, "editor")
    for depth in (50_000, 900):
        nested = '{"rules": ' + "[" * depth + "]" * depth + "}"
        answer = await draft(editor, nested)
        assert answer.status_code == 400, answer.text
        assert "text/html" in answer.headers["content-type"]
        assert "nests too deeply" in answer.text
    deep = {"all": [{"amount": {"gte": 1}}]}
    for _ in range(400):
        deep = {"not": deep}
    document = json.loads(await active_document(editor))
    document["rules"][0]["when"] = deep
    answer = await draft(editor, json.dumps(document))
    assert answer.status_code == 400, answer.text
    assert "nests deeper than 32" in answer.text
    assert "/versions/2" not in (await editor.get(CONSOLE + "/versions")).text  # nothing stored


async def test_a_console_failure_is_a_page_not_problem_json(console: Api) -> None:
    editor = await signed_in(console, "editor")
    # A store that fails in a way no handler expects (a table gone from under a signed-in user).
    await Services.of_app(console.app.app).db.write(
        lambda conn: conn.exec_driver_sql("DROP TABLE marketing_audit")
    )
    page = await editor.get(CONSOLE + "/audit")
    assert page.status_code == 500
    assert "text/html" in page.headers["content-type"], page.text
    assert "problem+json" not in page.headers["content-type"]
    assert "Traceback" not in page.text and "marketing_audit" not in page.text


def test_a_next_page_with_a_control_character_is_not_followed() -> None:
    base = "/console/pax/comp5"
    assert console_session.safe_next(base + "/rules", base=base) == base + "/rules"
    for bad in ("\t", "\x00", "\x1b", "\x7f", "\r", "\n"):
        assert console_session.safe_next(f"{base}/rules{bad}x", base=base) == base


def test_an_origin_that_is_not_a_url_is_no_origin() -> None:
    assert console_session.origin_of("http://[::1") is None
    assert console_session.origin_of("https://cmc.example:8443/x") == "https://cmc.example:8443"


# --- NUL in a path or a query; the console's own refusals --------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [("GET", "/customers?query=a%00b", "query"),
     ("GET", "/analytics/timeseries?metric=firings&rule=a%00b", "rule"),
     ("POST", "/messages/a%00b/retry", "path")],
)  # fmt: skip
async def test_a_nul_in_a_path_or_query_is_400(
    merchant: Merchant, method: str, path: str, field: str
) -> None:
    answer = await merchant.call(method, BASE + path, who="gl-editor")
    assert answer.status_code == 400, answer.text
    assert field in answer.json()["errors"], answer.text


@pytest.mark.parametrize("path", ["/customers?query=a%00b", "/optouts?contact=a%00b"])
async def test_a_nul_in_a_console_query_is_a_400_page(console: Api, path: str) -> None:
    viewer = await signed_in(console, "viewer")
    page = await viewer.get(CONSOLE + path)
    assert page.status_code == 400, page.text
    assert "text/html" in page.headers["content-type"]


async def test_an_action_checks_its_form_before_it_acts_whatever_carries_the_token(console: Api) -> None:
    editor = await signed_in(console, "editor")
    htmx = {"HX-Request": "true", "X-CSRF-Token": editor.csrf}
    # No such message: acting first would have been a 404; the form is refused before anything.
    answer = await editor.post(CONSOLE + "/messages/m-none/retry", {"back": "a\x00b"}, headers=htmx)
    assert answer.status_code == 400, answer.text
    multipart = await editor.http.post(
        CONSOLE + "/messages/m-none/retry", files={"back": (None, "a\x00b")}, headers={**ORIGIN, **htmx}
    )
    assert multipart.status_code == 400, multipart.text


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nosuchpage", 404), ("PUT", "/draft", 405)])
async def test_a_console_path_no_route_answers_is_a_page(
    console: Api, method: str, path: str, status: int
) -> None:
    editor = await signed_in(console, "editor")
    page = await editor.http.request(method, CONSOLE + path, headers=ORIGIN)
    assert page.status_code == status, page.text
    assert "text/html" in page.headers["content-type"], page.text
