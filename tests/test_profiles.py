"""Customer profiles: the pure normalizing/matching core, then identity resolution through the real app."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from sqlalchemy import select

from cmc import profiles
from cmc.profiles import Claim, Identifier, claim_of, match, normalize_card, normalize_email, normalize_phone
from cmc.store import tables
from cmc_client import wire
from support import Api, count_rows, seed_transaction

SEED_PROFILE_FIELDS = {
    "id",
    "firstName",
    "lastName",
    "customerEmail",
    "customerPhone",
    "salesPerson",
    "gender",
    "purchaseName",
    "purchaseId",
    "purchaseCategory",
    "purchasePrice",
}
"""The seed's ``profile`` block: these names and no others."""


async def fetch(api: Api, query: Any) -> list[Any]:
    db = api.db()
    try:
        return await db.read(lambda conn: list(conn.execute(query)))
    finally:
        await db.close()


async def profile_row(api: Api, profile_id: str) -> Any:
    [row] = await fetch(api, select(tables.profiles).where(tables.profiles.c.id == profile_id))
    return row


async def identifiers(api: Api) -> set[tuple[str, str, str]]:
    """Every known identifier as (kind, value, profile id)."""
    i = tables.profile_identifiers
    return {
        (r.kind, r.value, r.profile_id) for r in await fetch(api, select(i.c.kind, i.c.value, i.c.profile_id))
    }


async def tender_ok(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    answer = await api.tender(body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def customer(
    *,
    id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    first: str | None = None,
    last: str | None = None,
) -> dict[str, Any]:
    contacts = []
    if email:
        contacts.append({"type": "Email", "value": email})
    if phone:
        contacts.append({"phone": phone})
    body: dict[str, Any] = {"contacts": contacts}
    if id:
        body["id"] = id
    if first:
        body["firstName"] = first
    if last:
        body["lastName"] = last
    return body


def tx(*, card: str | None = None, cust: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A seed transaction whose customer is exactly ``cust`` and whose loyalty card is ``card``."""
    return seed_transaction(customer=cust, loyalty={"cardNumber": card} if card else None, **changes)


def request(**body: Any) -> wire.TransactionRequest:
    base = {"sessionId": "s", "transactionId": "t", "terminalId": "term5", "posLocationId": "loc5"}
    return msgspec.convert({**base, **body}, wire.TransactionRequest)


# --------------------------------------------------------------------------- pure: normalizing


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada@Example.com", "ada@example.com"),
        ("  ADA@EXAMPLE.COM \n", "ada@example.com"),
        ("first.last+tag@sub.example.org", "first.last+tag@sub.example.org"),
        ("not-an-email", None),
        ("@example.com", None),
        ("ada@localhost", None),
        ("ada lovelace@example.com", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_normalize_email(raw: str | None, expected: str | None) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0100", "US", "+14155550100"),
        ("415.555.0100", "US", "+14155550100"),
        ("+1 415 555 0100", "US", "+14155550100"),
        ("+1 415 555 0100", "FR", "+14155550100"),  # an explicit country code wins over the region
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("garbage", "US", None),
        ("12", "US", None),
        ("555-CALL-NOW-PLEASE-NOW-NOW", "US", None),
        ("", "US", None),
        ("   ", "US", None),
        (None, "US", None),
    ],
)
def test_normalize_phone(raw: str | None, region: str, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("L-0001", "L0001"), (" L 0001 ", "L0001"), ("1234-5678 9012", "123456789012"), ("", None),
     (" - ", None), (None, None)],
)  # fmt: skip
def test_normalize_card(raw: str | None, expected: str | None) -> None:
    assert normalize_card(raw) == expected


# --------------------------------------------------------------------------- pure: claims and matching


def test_claim_of_reads_both_contact_shapes_mixed() -> None:
    claim = claim_of(
        request(
            customer={
                "id": " cust-1 ",
                "firstName": " Ada ",
                "lastName": "",
                "birthDate": "1990-04-11T00:00:00Z",
                "gender": "F",
                "contacts": [
                    {"email": "Ada@Example.com", "phone": "(415) 555-0100"},
                    {"type": "Email", "value": "ada@work.example.org"},
                    {"type": "phone", "value": "415-555-0199"},
                    {"type": "EMAIL", "value": "ADA@example.COM"},  # a duplicate once normalized
                    {"type": "Phone", "value": "not a phone"},
                    {"type": "Fax", "value": "415-555-0111"},  # neither kind: ignored
                ],
            },
            loyalty={"cardNumber": "L-0001"},
            cardNumber="IGNORED-1",
        ),
        region="US",
    )
    assert claim.identifiers == (
        Identifier("card", "L0001"),
        Identifier("pos", "cust-1"),
        Identifier("email", "ada@example.com"),
        Identifier("email", "ada@work.example.org"),
        Identifier("phone", "+14155550100"),
        Identifier("phone", "+14155550199"),
    )
    assert (claim.person.first_name, claim.person.last_name) == ("Ada", None)
    assert (claim.person.email, claim.person.phone) == ("ada@example.com", "+14155550100")
    assert (claim.person.birth_date, claim.person.gender) == ("1990-04-11", "F")


def test_claim_of_top_level_card_and_region() -> None:
    claim = claim_of(
        request(cardNumber="9 9 9", customer={"contacts": [{"type": "Phone", "value": "06 12 34 56 78"}]}),
        region="FR",
    )
    assert claim.identifiers == (Identifier("card", "999"), Identifier("phone", "+33612345678"))


def test_claim_of_anonymous_transaction_has_no_identifiers() -> None:
    assert claim_of(request(), region="US").identifiers == ()
    named_only = claim_of(
        request(customer={"firstName": "Ada", "contacts": [{"email": "nope"}]}), region="US"
    )
    assert named_only.identifiers == () and named_only.person.first_name == "Ada"


def _claim(*identifiers: Identifier) -> Claim:
    return Claim(identifiers)


CARD, POS, EMAIL, PHONE = (
    Identifier("card", "L1"),
    Identifier("pos", "c1"),
    Identifier("email", "a@x.io"),
    Identifier("phone", "+14155550100"),
)


def test_match_everything_new() -> None:
    result = match(_claim(CARD, EMAIL), {})
    assert result == profiles.Match(profile_id=None, new=(CARD, EMAIL), conflicts=())


def test_match_strongest_known_identifier_decides() -> None:
    result = match(_claim(CARD, POS, EMAIL, PHONE), {EMAIL: "B", PHONE: "C"})
    assert result.profile_id == "B"
    assert result.new == (CARD, POS)
    assert result.conflicts == ((PHONE, "C"),)


@pytest.mark.parametrize(
    ("claimed", "known", "owner"),
    [
        ((CARD, POS), {CARD: "A", POS: "B"}, "A"),
        ((POS, EMAIL), {POS: "A", EMAIL: "B"}, "A"),
        ((EMAIL, PHONE), {EMAIL: "A", PHONE: "B"}, "A"),
        ((CARD, PHONE), {PHONE: "B", CARD: "A"}, "A"),
    ],
)
def test_match_priority_and_conflicts(
    claimed: tuple[Identifier, ...], known: dict[Identifier, str], owner: str
) -> None:
    result = match(_claim(*claimed), known)
    assert result.profile_id == owner
    assert result.new == ()
    assert result.conflicts == ((claimed[1], "B"),)


def test_match_same_profile_is_no_conflict() -> None:
    result = match(_claim(CARD, POS, EMAIL), {CARD: "A", EMAIL: "A"})
    assert result == profiles.Match(profile_id="A", new=(POS,), conflicts=())


# --------------------------------------------------------------------------- through the app


def identity(n: int) -> dict[str, Any]:
    """A customer of its own for scenario ``n``: card, POS id, email and phone nobody else has."""
    return {
        "card": f"L-{n:04d}",
        "cust": {
            "id": f"cust-{n}",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "contacts": [{"email": f"Ada{n}@Example.com", "phone": f"(415) 555-01{n:02d}"}],
        },
    }


RETURNING = {
    "card, top-level cardNumber, other formatting": lambda n: {"customer": None, "cardNumber": f"L {n:04d}"},
    "card, loyalty.cardNumber": lambda n: {"customer": None, "loyalty": {"cardNumber": f"L{n:04d}"}},
    "POS customer id": lambda n: {"customer": {"id": f"cust-{n}"}},
    "email, other case": lambda n: {
        "customer": {"contacts": [{"type": "Email", "value": f"ADA{n}@EXAMPLE.COM"}]}
    },
    "phone, other formatting": lambda n: {"customer": {"contacts": [{"phone": f"+1 415.555.01{n:02d}"}]}},
    "phone, type/value shape": lambda n: {
        "customer": {"contacts": [{"type": "Phone", "value": f"415-555-01{n:02d}"}]}
    },
}


async def test_returning_customer_matched_by_each_identifier_alone(api: Api) -> None:
    for n, (case, changes) in enumerate(RETURNING.items(), start=1):
        first = await tender_ok(api, tx(**identity(n)))
        pid = first["profile"]["id"]
        before = await identifiers(api)
        second = await tender_ok(api, seed_transaction(**{"loyalty": None, **changes(n)}))
        assert second["profile"]["id"] == pid, case
        assert await count_rows(api, "profiles") == n, case
        row = await profile_row(api, pid)
        assert (row.visit_count, row.lifetime_spend) == (2, Decimal("46.94")), case
        assert await identifiers(api) == before, case  # nothing new was learnt
        # the profile keeps what the sparse second transaction did not say
        profile = second["profile"]
        assert profile["customerEmail"] == f"ada{n}@example.com", case
        assert profile["customerPhone"] == f"+141555501{n:02d}", case
        assert profile["firstName"] == "Ada", case


async def test_first_transaction_creates_profile_with_every_identifier(api: Api) -> None:
    data = await tender_ok(api, seed_transaction())
    pid = data["profile"]["id"]
    assert await identifiers(api) == {
        ("card", "L0001", pid),
        ("pos", "cust-1", pid),
        ("email", "ada@example.com", pid),
        ("phone", "+14155550100", pid),
    }
    row = await profile_row(api, pid)
    assert (row.pos_system_id, row.company_id) == ("pax", "comp5")
    assert (row.visit_count, row.lifetime_spend, row.has_card) == (1, Decimal("23.47"), True)
    assert row.birth_date == "1990-04-11"
    [tx_row] = await fetch(api, select(tables.transactions.c.profile_id))
    assert tx_row.profile_id == pid


async def test_response_profile_has_exactly_the_seed_field_names(api: Api) -> None:
    body = seed_transaction()
    body["customer"]["gender"] = "Female"
    profile = (await tender_ok(api, body))["profile"]
    assert set(profile) == SEED_PROFILE_FIELDS
    assert profile["gender"] == "Female" and profile["salesPerson"] == "Sam Seller"
    assert all(profile[name] is None for name in SEED_PROFILE_FIELDS if name.startswith("purchase"))


def pair(n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Profiles A and B of scenario ``n``: every identifier distinct."""
    a = {
        "card": f"CARD-A{n}",
        "cust": customer(id=f"pos-a{n}", email=f"a{n}@a.example", phone=f"415-555-02{n:02d}"),
    }
    b = {
        "card": f"CARD-B{n}",
        "cust": customer(id=f"pos-b{n}", email=f"b{n}@b.example", phone=f"415-555-03{n:02d}"),
    }
    return a, b


# scenario n -> (the new transaction's claim, the conflicting identifier, whether A wins)
PRIORITY = {
    "card of A beats POS id of B": lambda n: (
        {"card": f"CARD-A{n}", "cust": customer(id=f"pos-b{n}")},
        ("pos", f"pos-b{n}"),
        True,
    ),
    "card of A beats email of B": lambda n: (
        {"card": f"CARD-A{n}", "cust": customer(email=f"B{n}@B.example")},
        ("email", f"b{n}@b.example"),
        True,
    ),
    "POS id of A beats email of B": lambda n: (
        {"cust": customer(id=f"pos-a{n}", email=f"b{n}@b.example")},
        ("email", f"b{n}@b.example"),
        True,
    ),
    "email of A beats phone of B": lambda n: (
        {"cust": customer(email=f"a{n}@a.example", phone=f"(415) 555-03{n:02d}")},
        ("phone", f"+141555503{n:02d}"),
        True,
    ),
    "card of B beats phone of A": lambda n: (
        {"card": f"CARD-B{n}", "cust": customer(phone=f"415555 02{n:02d}")},
        ("phone", f"+141555502{n:02d}"),
        False,
    ),
}


async def test_priority_order_and_conflicts_are_recorded_not_merged(api: Api) -> None:
    c = tables.profile_conflicts
    for n, (case, scenario) in enumerate(PRIORITY.items(), start=1):
        spec_a, spec_b = pair(n)
        a = (await tender_ok(api, tx(**spec_a)))["profile"]["id"]
        b = (await tender_ok(api, tx(**spec_b)))["profile"]["id"]
        assert a != b, case
        known = await identifiers(api)
        claim, conflict, a_wins = scenario(n)
        resolved, other = (a, b) if a_wins else (b, a)
        data = await tender_ok(api, tx(**claim))
        assert data["profile"]["id"] == resolved, case
        rows = await fetch(api, select(c).where(c.c.transaction_id == data["id"]))
        assert [(r.kind, r.value, r.resolved_profile_id, r.other_profile_id) for r in rows] == [
            (*conflict, resolved, other)
        ], case
        assert (rows[0].pos_system_id, rows[0].company_id) == ("pax", "comp5"), case
        # not merged: both profiles remain, every identifier still points where it did
        assert await count_rows(api, "profiles") == 2 * n, case
        assert await identifiers(api) == known, case
        assert (await profile_row(api, resolved)).visit_count == 2, case
        assert (await profile_row(api, other)).visit_count == 1, case
    assert await count_rows(api, "profile_conflicts") == len(PRIORITY)


async def test_every_identifier_seen_is_kept(api: Api) -> None:
    pid = (await tender_ok(api, tx(card="L-0001", cust=customer(first="Ada"))))["profile"]["id"]
    assert await identifiers(api) == {("card", "L0001", pid)}
    more = {
        "id": "cust-9",
        "contacts": [
            {"email": "ada@example.com", "phone": "(415) 555-0100"},
            {"type": "Email", "value": "ada@work.example.org"},
            {"type": "Phone", "value": "+44 20 7946 0958"},
        ],
    }
    assert (await tender_ok(api, tx(card="L0001", cust=more)))["profile"]["id"] == pid
    # a third visit names only the newest email, and adds yet another phone
    third = customer(email="Ada@Work.Example.org", phone="415 555 0177")
    assert (await tender_ok(api, tx(cust=third)))["profile"]["id"] == pid
    assert await identifiers(api) == {
        ("card", "L0001", pid),
        ("pos", "cust-9", pid),
        ("email", "ada@example.com", pid),
        ("email", "ada@work.example.org", pid),
        ("phone", "+14155550100", pid),
        ("phone", "+442079460958", pid),
        ("phone", "+14155550177", pid),
    }
    assert await count_rows(api, "profiles") == 1
    assert (await profile_row(api, pid)).visit_count == 3


ANONYMOUS = {
    "no customer": {"customer": None, "loyalty": None},
    "name only": {"customer": {"firstName": "Ada", "lastName": "Lovelace", "contacts": []}, "loyalty": None},
    "unusable contacts": {
        "customer": {
            "contacts": [{"email": "not an email", "phone": "garbage"}, {"type": "Email", "value": ""}]
        },
        "loyalty": {"cardNumber": ""},
        "cardNumber": " - ",
    },
}


async def test_anonymous_transaction_has_no_profile(api: Api) -> None:
    for case, changes in ANONYMOUS.items():
        data = await tender_ok(api, seed_transaction(**changes))
        assert data["profile"] is None, case
        [row] = await fetch(
            api,
            select(tables.transactions.c.profile_id, tables.transactions.c.loyalty_card).where(
                tables.transactions.c.id == data["id"]
            ),
        )
        assert row.profile_id is None and row.loyalty_card is None, case
    assert await count_rows(api, "profiles") == 0
    assert await count_rows(api, "profile_identifiers") == 0


async def test_profile_fields_update_with_latest_non_empty_values(api: Api) -> None:
    first = seed_transaction()
    first["customer"]["gender"] = "F"
    pid = (await tender_ok(api, first))["profile"]["id"]
    second = seed_transaction(
        customer={
            "id": "cust-1",
            "firstName": "Adeline",
            "lastName": "   ",  # blank: keeps the known last name
            "contacts": [{"type": "Email", "value": "adeline@example.com"}],
        },
        loyalty=None,
    )
    profile = (await tender_ok(api, second))["profile"]
    assert profile["id"] == pid
    assert profile["firstName"] == "Adeline"
    assert profile["lastName"] == "Lovelace"
    assert profile["customerEmail"] == "adeline@example.com"
    assert profile["customerPhone"] == "+14155550100"
    assert profile["gender"] == "F"
    row = await profile_row(api, pid)
    assert (row.first_name, row.last_name, row.email, row.phone, row.gender, row.birth_date) == (
        "Adeline",
        "Lovelace",
        "adeline@example.com",
        "+14155550100",
        "F",
        "1990-04-11",
    )
    # The same name again (the common case, written without touching the name index): the other
    # details and the counters still change.
    third = seed_transaction(
        customer={
            "id": "cust-1",
            "firstName": "Adeline",
            "contacts": [
                {"type": "Email", "value": "adeline@example.com"},
                {"type": "Phone", "value": "4155550199"},
            ],
        },
        loyalty=None,
    )
    assert (await tender_ok(api, third))["profile"]["customerPhone"] == "+14155550199"
    row = await profile_row(api, pid)
    assert (row.first_name, row.last_name, row.phone, row.visit_count) == (
        "Adeline",
        "Lovelace",
        "+14155550199",
        3,
    )


async def test_phone_uses_the_location_country_as_default_region(api: Api) -> None:
    body = seed_transaction(
        terminalId="term9",
        posLocationId="loc9",
        customer={"id": "fr-1", "contacts": [{"type": "Phone", "value": "06 12 34 56 78"}]},
        loyalty=None,
    )
    profile = (await tender_ok(api, body))["profile"]
    assert profile["customerPhone"] == "+33612345678"
    assert ("phone", "+33612345678", profile["id"]) in await identifiers(api)


async def test_profiles_belong_to_one_company(api: Api) -> None:
    here = (await tender_ok(api, seed_transaction()))["profile"]["id"]
    there = (await tender_ok(api, seed_transaction(terminalId="term9", posLocationId="loc9")))["profile"][
        "id"
    ]
    assert here != there
    assert await count_rows(api, "profiles") == 2
    assert await count_rows(api, "profile_conflicts") == 0


async def test_reversal_counts_no_visit_and_lowers_spend(api: Api) -> None:
    pid = (await tender_ok(api, seed_transaction()))["profile"]["id"]
    refund = seed_transaction(transactionType="Refund", transactionAmount="10.00")
    assert (await tender_ok(api, refund))["profile"]["id"] == pid
    row = await profile_row(api, pid)
    assert (row.visit_count, row.lifetime_spend) == (1, Decimal("13.47"))
