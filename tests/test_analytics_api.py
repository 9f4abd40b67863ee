"""The analytics API against the real app, on both engines: the numbers equal what the test posted.

Sales go through the POS API, scans through ``/s/{code}``, messages through the real dispatcher (the
email to the log sender: sent; the SMS to a real HTTP server answering 400: dead), an opt-out through
``/u/{token}``. The registry is tests/analytics.yaml.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest

from cmc.outbox import Dispatcher
from support import Api, ManualClock, seed_transaction
from test_merchant_api import Merchant
from test_outbox_senders import sms_server

REGISTRY = Path(__file__).with_name("analytics.yaml")
BASE = "/v1/pos/pax/companies/comp5"
OTHER = "/v1/pos/pax/companies/comp6"
T0 = datetime(2026, 11, 2, 15, 30, tzinfo=UTC)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    " Version/17.1 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DAY = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-04T00:00:00Z"}


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def person(
    pos_id: str, first: str, last: str, email: str | None = None, phone: str | None = None
) -> dict[str, Any]:
    contacts = [{"email": email, "phone": phone}] if email or phone else []
    return {"id": pos_id, "firstName": first, "lastName": last, "contacts": contacts}


@dataclass
class Shop:
    """The app on tests/analytics.yaml, its clock, and the merchant's tokens."""

    api: Api
    clock: ManualClock
    merchant: Merchant

    async def sale(
        self,
        amount: float,
        *,
        customer: dict[str, Any] | None,
        card: str | None = None,
        location: str = "loc5",
        terminal: str = "term5",
    ) -> dict[str, Any]:
        body = seed_transaction(
            customer=customer,
            loyalty={"cardNumber": card} if card else None,
            transactionAmount=amount,
            transactionDate=iso(self.clock.now),
            posLocationId=location,
            terminalId=terminal,
            products=[],
        )
        answer = await self.api.tender(body)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()["data"]
        return data

    async def token(self, client_id: str) -> str:
        return await self.merchant.token(client_id)

    async def call(
        self, method: str, path: str, *, who: str = "gl-viewer", csv: bool = False, **params: Any
    ) -> httpx2.Response:
        """``params`` are the query's, but ``headers``."""
        headers = {**params.pop("headers", {}), **({"Accept": "text/csv"} if csv else {})}
        return await self.merchant.call(method, path, who=who, headers=headers, params=params or None)

    async def data(self, path: str, **params: Any) -> Any:
        answer = await self.call("GET", path, **params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def scan(self, code: str, user_agent: str) -> None:
        answer = await self.api.http.get(f"/s/{code}", headers={"User-Agent": user_agent})
        assert answer.status_code in (302, 303, 307), answer.text

    async def dispatch(self) -> None:
        outbox = Dispatcher(self.api.db(), self.api.settings, clock=self.clock)
        await outbox.run_once()
        await outbox.stop()


@pytest.fixture
def provider() -> Iterator[Any]:
    with sms_server(400) as server:  # every SMS refused for good: dead
        yield server


@pytest.fixture
async def shop(api_factory: Callable[..., Any], provider: Any) -> AsyncIterator[Shop]:
    clock = ManualClock(T0)
    async with api_factory(
        registry=REGISTRY,
        clock=clock,
        dispatcher=False,
        sms_url=provider.url("AC123:s3cret"),
        token_ttl=timedelta(days=30),  # the tests move the clock by days
    ) as api:
        yield Shop(api, clock, Merchant(api))


def code_of(sale: dict[str, Any]) -> str:
    return str(sale["qrCodeWidget"]["shortLinkUrl"]).rsplit("/", 1)[1]


@dataclass
class Story:
    """What ``tell`` posted: the ids a test checks against."""

    ada: str
    bob: str
    ada_sale: dict[str, Any]


async def tell(shop: Shop) -> Story:
    """Three sales of comp5 and one of comp6; three scans (one by a bot); an email sent, an SMS dead,
    an opt-out by link.

    15:30 Ada (card, email, phone) 23.47: coupon fires (QR, SMS, email).
    16:30 Bob Adams (email) 10.00: nothing fires; an anonymous 30.00: coupon fires (QR, no contact).
    """
    ada_sale = await shop.sale(
        23.47, customer=person("c-ada", "Ada", "Lovelace", "Ada@Example.com", "(415) 555-0100"), card="L-0001"
    )
    await shop.scan(code_of(ada_sale), IPHONE)
    await shop.scan(code_of(ada_sale), GOOGLEBOT)
    await shop.dispatch()
    shop.clock.advance(hours=1)
    bob_sale = await shop.sale(10, customer=person("c-bob", "Bob", "Adams", "bob@example.com"))
    assert bob_sale["qrCodeWidget"] is None
    anonymous = await shop.sale(30, customer=None)
    await shop.scan(code_of(anonymous), IPHONE)
    cy = person("c-cy", "Cy", "Harbour", "cy@example.com")
    await shop.sale(20, customer=cy, location="loc9", terminal="term9")  # Blue Door's: counted nowhere here
    email = (await shop.data(f"{BASE}/messages", channel="email"))["data"][0]
    token = re.search(r"/u/([A-Za-z0-9_-]+)", email["body"])
    assert token is not None
    assert (await shop.api.http.post(f"/u/{token[1]}")).status_code == 200
    return Story(ada_sale["profile"]["id"], bob_sale["profile"]["id"], ada_sale)


# --- the numbers ----------------------------------------------------------------------------------


async def test_the_summary_counts_what_was_posted(shop: Shop) -> None:
    await tell(shop)
    summary = (await shop.data(f"{BASE}/analytics/summary", **DAY))["data"]
    assert summary == {
        "since": "2026-11-01T00:00:00Z",
        "until": "2026-11-04T00:00:00Z",
        "tenders": 3,
        "identified": 2,
        "identifiedShare": 2 / 3,
        "firings": {"treatment": 2, "holdout": 0},
        "scans": 2,
        "botScans": 1,
        "links": 2,
        "scanRate": 1.0,
        "messages": {
            "queued": 0,
            "sending": 0,
            "sent": 1,
            "delivered": 0,
            "failed": 0,
            "bounced": 0,
            "suppressed": 0,
            "dead": 1,
        },
        "optOuts": 1,
        "influencedRevenue": "53.47",
        "influencedRevenueNote": "descriptive: sales on which a rule fired, not caused by it (see lift)",
    }
    # The default window is the 30 days before now: the same sales.
    shop.clock.advance(minutes=1)
    assert (await shop.data(f"{BASE}/analytics/summary"))["data"]["tenders"] == 3
    empty = (
        await shop.data(
            f"{BASE}/analytics/summary", **{"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00+02:00"}
        )
    )["data"]
    assert (empty["tenders"], empty["identifiedShare"], empty["scanRate"]) == (0, None, None)


async def test_series_have_every_utc_bucket(shop: Shop) -> None:
    await tell(shop)
    hourly = await shop.data(
        f"{BASE}/analytics/timeseries",
        metric="tenders",
        bucket="hour",
        **{"from": iso(T0 - timedelta(hours=1)), "to": iso(T0 + timedelta(hours=3))},
    )
    assert hourly["data"]["timezone"] == "UTC"
    assert [(p["at"], p["value"]) for p in hourly["data"]["points"]] == [
        ("2026-11-02T14:00:00Z", 0),
        ("2026-11-02T15:00:00Z", 1),
        ("2026-11-02T16:00:00Z", 2),
        ("2026-11-02T17:00:00Z", 0),
        ("2026-11-02T18:00:00Z", 0),
    ]
    expected = {
        "tenders": [0, 3, 0],
        "firings": [0, 2, 0],
        "scans": [0, 2, 0],
        "messages": [0, 2, 0],
        "optouts": [0, 1, 0],
    }
    for metric, values in expected.items():
        daily = await shop.data(f"{BASE}/analytics/timeseries", metric=metric, bucket="day", **DAY)
        assert [p["at"] for p in daily["data"]["points"]] == [f"2026-11-0{d}T00:00:00Z" for d in (1, 2, 3)]
        assert [p["value"] for p in daily["data"]["points"]] == values, metric
    for metric, values in {"firings": [0, 2, 0], "scans": [0, 2, 0], "messages": [0, 2, 0]}.items():
        of_rule = await shop.data(
            f"{BASE}/analytics/timeseries", metric=metric, bucket="day", rule="coupon", **DAY
        )
        assert [p["value"] for p in of_rule["data"]["points"]] == values, metric
        other = await shop.data(
            f"{BASE}/analytics/timeseries", metric=metric, bucket="day", rule="nope", **DAY
        )
        assert [p["value"] for p in other["data"]["points"]] == [0, 0, 0], metric


# --- customers ------------------------------------------------------------------------------------


async def test_customers_are_found_by_each_identifier_and_by_name(shop: Shop) -> None:
    story = await tell(shop)
    for query in (
        "ADA@example.com ",
        "(415) 555-0100",
        "+1 415 555 0100",
        "L-0001",
        "L 0001",
        "c-ada",
        "LOVE",
        "Ada Lovelace",
        "lovelace ada",
    ):
        found = await shop.data(f"{BASE}/customers", query=query)
        assert [c["id"] for c in found["data"]] == [story.ada], query
    [ada] = (await shop.data(f"{BASE}/customers", query="ada@example.com"))["data"]
    assert (ada["firstName"], ada["email"], ada["phone"], ada["visitCount"], ada["hasCard"]) == (
        "Ada",
        "ada@example.com",
        "+14155550100",
        1,
        True,
    )
    assert (await shop.data(f"{BASE}/customers", query="bob@example.com"))["data"][0]["id"] == story.bob
    assert (await shop.data(f"{BASE}/customers", query="nobody"))["data"] == []
    # "ad" starts Ada's first name and Bob's last: two pages of one.
    first = await shop.data(f"{BASE}/customers", query="ad", limit=1)
    second = await shop.data(f"{BASE}/customers", query="ad", limit=1, cursor=first["next"])
    assert first["next"] and second["next"] is None
    assert {first["data"][0]["id"], second["data"][0]["id"]} == {story.ada, story.bob}


async def test_a_customer_timeline_holds_their_history(shop: Shop) -> None:
    story = await tell(shop)
    # Bob's POS id with Ada's email: Bob's profile decides, Ada's email is recorded as a conflict.
    await shop.sale(12, customer=person("c-bob", "Bob", "Adams", "ada@example.com"))
    timeline = (await shop.data(f"{BASE}/customers/{story.ada}"))["data"]
    assert timeline["customer"]["id"] == story.ada
    assert {(i["kind"], i["value"]) for i in timeline["identifiers"]} == {
        ("card", "L0001"),
        ("pos", "c-ada"),
        ("email", "ada@example.com"),
        ("phone", "+14155550100"),
    }
    [visit] = timeline["visits"]
    assert (visit["transactionId"], visit["amount"], visit["locationId"]) == (
        story.ada_sale["id"],
        "23.47",
        "loc5",
    )
    assert [(f["rule"], f["variant"]) for f in timeline["firings"]] == [("coupon", "treatment")]
    assert sorted((m["channel"], m["state"], m["reason"]) for m in timeline["messages"]) == [
        ("email", "sent", None),
        ("sms", "dead", "http-400"),
    ]
    assert sorted((s["agent"], s["bot"]) for s in timeline["scans"]) == [
        ("Googlebot", True),
        ("Mobile Safari", False),
    ]
    assert [(o["channel"], o["recipient"]) for o in timeline["optOuts"]] == [("email", "ada@example.com")]
    [conflict] = timeline["conflicts"]
    assert (conflict["kind"], conflict["otherProfileId"], conflict["resolvedProfileId"]) == (
        "email",
        story.ada,
        story.bob,
    )
    missing = await shop.call("GET", f"{BASE}/customers/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert (await shop.call("GET", f"{BASE}/customers/not%20an%20id")).status_code == 404


# --- messages -------------------------------------------------------------------------------------


async def test_messages_filter_page_and_retry(shop: Shop) -> None:
    await tell(shop)
    [dead] = (await shop.data(f"{BASE}/messages", state="dead"))["data"]
    assert (dead["channel"], dead["recipient"], dead["reason"], dead["attempts"]) == (
        "sms",
        "+14155550100",
        "http-400",
        1,
    )
    assert dead["body"].startswith("Thanks Ada! Your coupon: http://cmc.test/s/")
    assert dead["lastError"]
    [email] = (await shop.data(f"{BASE}/messages", channel="email"))["data"]
    assert (email["state"], email["subject"]) == ("sent", "Your coupon")
    first = await shop.data(f"{BASE}/messages", limit=1)
    second = await shop.data(f"{BASE}/messages", limit=1, cursor=first["next"])
    assert second["next"] is None
    assert {first["data"][0]["id"], second["data"][0]["id"]} == {dead["id"], email["id"]}

    retry = f"{BASE}/messages/{dead['id']}/retry"
    assert (await shop.call("POST", retry)).status_code == 403  # a viewer
    refused = await shop.call("POST", f"{BASE}/messages/{email['id']}/retry", who="gl-editor")
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    key = {"Idempotency-Key": "retry-1"}
    done = await shop.call("POST", retry, who="gl-editor", headers=key)
    assert done.status_code == 200, done.text
    assert (done.json()["data"]["state"], done.json()["data"]["attempts"], done.json()["data"]["reason"]) == (
        "queued",
        0,
        None,
    )
    again = await shop.call("POST", retry, who="gl-editor", headers=key)
    assert (again.status_code, again.headers.get("idempotent-replayed")) == (200, "true")
    assert (await shop.call("POST", retry, who="gl-publisher")).status_code == 409  # queued now
    missing = await shop.call("POST", f"{BASE}/messages/nope/retry", who="gl-editor")
    assert missing.status_code == 404
    assert (await shop.data(f"{BASE}/messages", state="queued"))["data"][0]["id"] == dead["id"]


# --- the lift -------------------------------------------------------------------------------------


async def test_the_lift_of_a_rule_with_a_holdout(shop: Shop) -> None:
    """240 customers at loc6 (half held out); the treatment's even customers come back within a day."""
    arms: dict[str, list[int]] = {"treatment": [], "holdout": []}
    for n in range(240):
        sale = await shop.sale(
            10, customer=person(f"l-{n}", "Lift", f"N{n}"), location="loc6", terminal="term6"
        )
        arms["treatment" if sale["qrCodeWidget"] else "holdout"].append(n)
    shop.clock.advance(hours=12)
    returning = [n for n in arms["treatment"] if n % 2 == 0] + [n for n in arms["holdout"] if n % 4 == 0]
    for n in returning:
        await shop.sale(5, customer=person(f"l-{n}", "Lift", f"N{n}"), location="loc6", terminal="term6")
    shop.clock.advance(days=2)
    report = (await shop.data(f"{BASE}/rules/held out half/lift", days="1"))["data"]
    for arm, members in arms.items():
        back = [n for n in members if n in returning]
        assert (report[arm]["customers"], report[arm]["returned"]) == (len(members), len(back)), arm
        assert report[arm]["revenue"] == 5 * len(back)
    expected = len([n for n in arms["treatment"] if n % 2 == 0]) / len(arms["treatment"]) - len(
        [n for n in arms["holdout"] if n % 4 == 0]
    ) / len(arms["holdout"])
    assert report["returnRate"]["lift"] == pytest.approx(expected)
    assert report["returnRate"]["low"] < expected < report["returnRate"]["high"]
    assert report["reason"] is None
    # The coupon holds nobody out: no lift, and why.
    coupon = (await shop.data(f"{BASE}/rules/coupon/lift"))["data"]
    assert coupon["returnRate"] is None and "100" in coupon["reason"]
    assert (await shop.call("GET", f"{BASE}/rules/no such rule/lift")).status_code == 404
    assert (await shop.call("GET", f"{BASE}/rules/coupon/lift", days="0")).status_code == 400


# --- CSV ------------------------------------------------------------------------------------------


def rows_of(answer: httpx2.Response) -> list[dict[str, str]]:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(answer.text)))


async def test_every_list_and_series_as_csv(shop: Shop) -> None:
    story = await tell(shop)
    hostile = await shop.sale(
        5, customer=person("c-evil", '=HYPERLINK("http://evil")', 'Adamant, "Jr"\nII', "evil@example.com")
    )
    summary = rows_of(await shop.call("GET", f"{BASE}/analytics/summary", csv=True, **DAY))
    values = {row["name"]: row["value"] for row in summary}
    assert (values["tenders"], values["firings.treatment"], values["messages.dead"]) == ("4", "2", "1")
    series = rows_of(
        await shop.call("GET", f"{BASE}/analytics/timeseries", csv=True, metric="tenders", **DAY)
    )
    assert [(r["at"], r["value"]) for r in series] == [
        ("2026-11-01T00:00:00+00:00", "0"),
        ("2026-11-02T00:00:00+00:00", "4"),
        ("2026-11-03T00:00:00+00:00", "0"),
    ]
    found = await shop.call("GET", f"{BASE}/customers", csv=True, query="ad", limit=2)
    people = rows_of(found)
    assert found.headers["x-next-cursor"]
    assert len(people) == 2
    evil = rows_of(await shop.call("GET", f"{BASE}/customers", csv=True, query="evil@example.com"))
    assert evil[0]["id"] == hostile["profile"]["id"]
    assert evil[0]["firstName"] == '\'=HYPERLINK("http://evil")'  # inert in a spreadsheet
    assert evil[0]["lastName"] == 'Adamant, "Jr"\nII'  # quoted, not split
    log = rows_of(await shop.call("GET", f"{BASE}/messages", csv=True))
    assert sorted(r["state"] for r in log) == ["dead", "sent"]
    assert {r["channel"]: r["reason"] for r in log} == {"sms": "http-400", "email": ""}
    visits = rows_of(await shop.call("GET", f"{BASE}/customers/{story.ada}", csv=True))
    assert [(v["transactionId"], v["amount"]) for v in visits] == [(story.ada_sale["id"], "23.47")]


# --- bad parameters -------------------------------------------------------------------------------


BAD = [
    ("/analytics/summary", {"from": "yesterday"}, "from"),
    ("/analytics/summary", {"to": "2026-13-01T00:00:00Z"}, "to"),
    ("/analytics/summary", {"from": "2026-11-01T00:00:00"}, "from"),  # no time zone
    ("/analytics/summary", {"from": "2026-11-03T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "from"),
    ("/analytics/summary", {"from": "2024-01-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}, "from"),
    ("/analytics/timeseries", {"metric": "revenue"}, "metric"),
    ("/analytics/timeseries", {"metric": "tenders", "bucket": "week"}, "bucket"),
    (
        "/analytics/timeseries",
        {"metric": "tenders", "bucket": "hour", **DAY, "from": "2026-10-01T00:00:00Z"},
        "bucket",
    ),
    ("/analytics/timeseries", {"metric": "tenders", "rule": "coupon"}, "rule"),
    ("/customers", {}, "query"),
    ("/customers", {"query": "ada", "limit": "0"}, "limit"),
    ("/customers", {"query": "ada", "limit": "500"}, "limit"),
    ("/customers", {"query": "ada", "limit": "many"}, "limit"),
    ("/customers", {"query": "ada", "cursor": "'; drop"}, "cursor"),
    ("/messages", {"state": "lost"}, "state"),
    ("/messages", {"channel": "fax"}, "channel"),
    ("/messages", {"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
    ("/rules/coupon/lift", {"days": "400"}, "days"),
]


async def test_bad_parameters_are_400_naming_the_field(shop: Shop) -> None:
    for path, params, field in BAD:
        answer = await shop.call("GET", BASE + path, **params)
        assert answer.status_code == 400, (path, params, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert field in answer.json()["errors"], (path, params, answer.json())


# --- tenants --------------------------------------------------------------------------------------


def analytics_paths(base: str, profile_id: str, message_id: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"{base}/analytics/summary"),
        ("GET", f"{base}/analytics/timeseries?metric=tenders"),
        ("GET", f"{base}/rules/coupon/lift"),
        ("GET", f"{base}/customers?query=ada"),
        ("GET", f"{base}/customers/{profile_id}"),
        ("GET", f"{base}/messages"),
        ("POST", f"{base}/messages/{message_id}/retry"),
    ]


async def test_every_analytics_path_is_the_company_s_own(shop: Shop) -> None:
    story = await tell(shop)
    [dead] = (await shop.data(f"{BASE}/messages", state="dead"))["data"]
    pos_token = await shop.api.token("pax")
    for method, path in analytics_paths(BASE, story.ada, dead["id"]):
        for who in ("bd-publisher", "clover-merchant"):  # another company's merchant: nothing to see
            other = await shop.api.http.request(
                method, path, headers={"Authorization": f"Bearer {await shop.token(who)}"}
            )
            assert other.status_code == 404, (who, path, other.text)
            assert "Ada" not in other.text and "ada@" not in other.text
        pos = await shop.api.http.request(method, path, headers={"Authorization": f"Bearer {pos_token}"})
        assert pos.status_code == 403, (path, pos.text)
        anonymous = await shop.api.http.request(method, path)
        assert anonymous.status_code == 401, (path, anonymous.text)
    # Blue Door's own paths name none of Green Leaf's customers or messages.
    for method, path in analytics_paths(OTHER, story.ada, dead["id"]):
        if "lift" in path:
            continue
        answer = await shop.call(method, path, who="bd-publisher")
        assert answer.status_code in (200, 404), (path, answer.text)
        assert "Lovelace" not in answer.text and "+14155550100" not in answer.text, path
    theirs = await shop.data(f"{OTHER}/analytics/summary", who="bd-publisher", **DAY)
    assert theirs["data"]["tenders"] == 1
