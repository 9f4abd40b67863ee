"""StartInteraction → SendTransaction through the real app on a real SQLite file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from sqlalchemy import select, text

from cmc import sessions
from cmc.sale import no_reaction
from cmc.store import tables
from support import Api, ManualClock, count_rows, seed_transaction, unique


async def fetch(api: Api, query: Any) -> list[Any]:
    db = api.db()
    try:
        return await db.read(lambda conn: list(conn.execute(query)))
    finally:
        await db.close()


def problem(answer: httpx2.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert "Traceback" not in answer.text
    return body


async def test_seed_payload_round_trip(api: Api) -> None:
    body = seed_transaction()
    answer = await api.tender(body)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert set(data) >= {"id", "qrCodeWidget", "cfsTemplate", "posStatus", "profile"}
    assert data["qrCodeWidget"] is None and data["cfsTemplate"] is None
    assert data["posStatus"] == "Accepted"
    assert data["sessionId"] == body["sessionId"]
    assert data["profile"] == {
        "id": data["profile"]["id"],
        "firstName": "Ada",
        "lastName": "Lovelace",
        "customerEmail": "ada@example.com",
        "customerPhone": "+14155550100",
        "salesPerson": "Sam Seller",
        "gender": None,
        "purchaseName": None,
        "purchaseId": None,
        "purchaseCategory": None,
        "purchasePrice": None,
    }
    [row] = await fetch(api, select(tables.transactions).where(tables.transactions.c.id == data["id"]))
    assert row.pos_transaction_id == body["transactionId"]
    assert row.company_id == "comp5" and row.location_id == "loc5" and row.terminal_id == "term5"
    assert row.amount == Decimal("23.47")
    assert row.loyalty_card == "L0001"
    assert row.transaction_type == "Sale" and row.is_reversal is False
    # 10:15 wall clock in Los Angeles (PST, UTC-8) is 18:15 UTC.
    assert row.occurred_at == datetime(2026, 11, 26, 18, 15, tzinfo=UTC)
    # The basket is kept in the stored request, exactly.
    products = json.loads(row.request)["products"]
    assert [(p["productId"], p["productCategory"], Decimal(p["quantity"])) for p in products] == [
        ("p-1", "Edibles", Decimal(2)),
        ("p-2", "Drinks", Decimal(1)),
        ("p-3", "Gear", Decimal(1)),
    ]
    # The session that carried it names the transaction: that key makes the session single-use.
    assert data["id"] == body["sessionId"]


async def test_start_interaction_shape(api: Api) -> None:
    answer = await api.post(
        "/pos/pax/startInteraction", {"terminalId": "term5", "posLocationId": "loc5", "posCompanyId": "comp5"}
    )
    assert answer.status_code == 200
    data = answer.json()["data"]
    assert data["terminalId"] == "term5" and data["posLocationId"] == "loc5"
    assert data["posStatus"] == "Accepted" and len(data["sessionId"]) == 36


async def test_paths_are_case_insensitive_and_json_patch_is_json(api: Api) -> None:
    token = await api.token()
    answer = await api.http.post(
        "/Pos/pax/StartInteraction",
        content=json.dumps({"terminalId": "term5", "posLocationId": "loc5"}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json-patch+json"},
    )
    assert answer.status_code == 200, answer.text
    body = seed_transaction(sessionId=answer.json()["data"]["sessionId"])
    answer = await api.http.post(
        "/POS/pax/Transaction",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json; charset=utf-8"},
    )
    assert answer.status_code == 200, answer.text


async def test_replay_returns_identical_response_and_stores_nothing(api: Api) -> None:
    body = seed_transaction()
    first = await api.tender(body)
    counts = {t: await count_rows(api, t) for t in ("transactions", "profiles", "profile_identifiers")}
    again = await api.send(body)  # same session, same body: the lost-answer retry
    assert again.status_code == 200
    assert again.content == first.content
    fresh_session = dict(body, sessionId=await api.session())  # the client had to open a new session
    third = await api.send(fresh_session)
    assert third.content == first.content
    assert {t: await count_rows(api, t) for t in counts} == counts


async def test_same_transaction_id_different_body_is_409(api: Api) -> None:
    body = seed_transaction()
    assert (await api.tender(body)).status_code == 200
    changed = dict(body, transactionAmount=99.99, sessionId=await api.session())
    problem(await api.send(changed), 409)
    assert await count_rows(api, "transactions") == 1


async def test_same_transaction_id_in_two_companies_is_two_transactions(api: Api) -> None:
    shared_id = unique("shared")
    first = await api.tender(seed_transaction(transactionId=shared_id))
    second = await api.tender(
        seed_transaction(transactionId=shared_id, terminalId="term9", posLocationId="loc9")
    )
    assert first.status_code == second.status_code == 200, second.text
    assert first.json()["data"]["id"] != second.json()["data"]["id"]
    rows = await fetch(
        api, select(tables.transactions.c.company_id).order_by(tables.transactions.c.company_id)
    )
    assert [r.company_id for r in rows] == ["comp5", "comp6"]


async def test_session_carries_one_transaction(api: Api) -> None:
    session = await api.session()
    assert (await api.send(seed_transaction(sessionId=session))).status_code == 200
    body = problem(await api.send(seed_transaction(sessionId=session)), 409)
    assert body["type"].endswith("session-used")


async def test_expired_session_is_410(api_factory: Any) -> None:
    clock = ManualClock()
    async with api_factory(session_ttl=timedelta(minutes=15), clock=clock) as api:
        session = await api.session()
        clock.advance(minutes=15, seconds=1)
        body = problem(await api.send(seed_transaction(sessionId=session)), 410)
        assert body["type"].endswith("session-expired")
        assert await count_rows(api, "transactions") == 0


async def test_unknown_session_is_404(api: Api) -> None:
    problem(await api.send(seed_transaction(sessionId="no-such-session")), 404)


async def test_session_of_another_pos_system_is_404(api: Api) -> None:
    session = await api.session(pos="clover", terminal="term7", location="loc7")
    problem(await api.send(seed_transaction(sessionId=session)), 404)


async def test_terminal_or_location_not_matching_session_is_400(api: Api) -> None:
    here = sessions.Where("pax", "loc5", "term5")  # where the seed's sale is posted
    session = await api.session_told_apart(sessions.Where("pax", "loc5", "term6"), here)
    body = problem(await api.send(seed_transaction(sessionId=session)), 400)
    assert set(body["errors"]) == {"terminalId"}
    session = await api.session_told_apart(sessions.Where("pax", "loc9", "term9"), here)
    body = problem(await api.send(seed_transaction(sessionId=session)), 400)
    assert set(body["errors"]) == {"terminalId", "posLocationId"}


async def test_unknown_terminal_location_or_company_is_404(api: Api) -> None:
    body = problem(await api.start(terminal="nope"), 404)
    assert "Terminal Not Found" in body["detail"]
    problem(await api.start(location="nowhere"), 404)
    problem(await api.start(terminal="term7", location="loc7"), 404)  # clover's location
    answer = await api.post(
        "/pos/pax/startInteraction", {"terminalId": "term5", "posLocationId": "loc5", "posCompanyId": "comp6"}
    )
    assert "not a location of company 'comp6'" in problem(answer, 404)["detail"]  # loc5 is comp5's
    problem(await api.send(seed_transaction(sessionId="x", terminalId="nope")), 404)


async def test_disabled_pos_system_gets_status_and_no_session(api: Api) -> None:
    answer = await api.start(pos="sleepy", terminal="term8", location="loc8")
    assert answer.status_code == 200
    assert answer.json()["data"] == {
        "terminalId": "term8",
        "posLocationId": "loc8",
        "sessionId": None,
        "posStatus": "Disabled",
    }
    answer = await api.send(
        seed_transaction(sessionId="s", terminalId="term8", posLocationId="loc8"), pos="sleepy"
    )
    assert answer.status_code == 200
    assert answer.json()["data"]["posStatus"] == "Disabled" and answer.json()["data"]["id"] is None
    assert await count_rows(api, "transactions") == 0


async def test_transactions_disabled_by_setting_is_403(api: Api) -> None:
    session = await api.session(pos="quiet", terminal="term4", location="loc4")
    answer = await api.send(
        seed_transaction(sessionId=session, terminalId="term4", posLocationId="loc4"), pos="quiet"
    )
    assert "isTransactionsEnabled" in problem(answer, 403)["detail"]


async def test_token_for_another_pos_system_is_403(api: Api) -> None:
    token = await api.token("clover")
    answer = await api.http.post(
        "/pos/pax/startInteraction",
        json={"terminalId": "term5", "posLocationId": "loc5"},
        headers={"Authorization": f"Bearer {token}"},
    )
    problem(answer, 403)


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer not-a-jwt", "Basic cGF4LWRlbW86czNjcjN0IQ==", "Bearer eyJhbGciOiJub25lIn0.e30."],
)
async def test_missing_or_invalid_token_is_401(api: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = await api.http.post(
        "/pos/pax/startInteraction", json={"terminalId": "term5", "posLocationId": "loc5"}, headers=headers
    )
    problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_expired_token_is_401(api_factory: Any) -> None:
    clock = ManualClock()
    async with api_factory(token_ttl=timedelta(seconds=1), clock=clock) as api:
        token = await api.token()
        clock.advance(seconds=1.1)
        answer = await api.http.post(
            "/pos/pax/startInteraction",
            json={"terminalId": "term5", "posLocationId": "loc5"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert "expired" in problem(answer, 401)["detail"]


async def test_token_endpoint_errors(api: Api) -> None:
    form = {"grant_type": "client_credentials", "scope": "pos_integration"}
    problem(await api.http.post("/connect/token", data=form, auth=("pax-demo", "wrong")), 401)
    problem(await api.http.post("/connect/token", data=form, auth=("nobody", "s3cr3t!")), 401)
    problem(await api.http.post("/connect/token", data=form), 401)
    bad_grant = await api.http.post(
        "/connect/token", data={"grant_type": "password"}, auth=("pax-demo", "s3cr3t!")
    )
    assert "grant_type" in problem(bad_grant, 400)["errors"]
    bad_scope = await api.http.post(
        "/connect/token", data={**form, "scope": "admin"}, auth=("pax-demo", "s3cr3t!")
    )
    assert "scope" in problem(bad_scope, 400)["errors"]
    problem(await api.http.post("/connect/token", json=form, auth=("pax-demo", "s3cr3t!")), 415)
    good = await api.http.post("/connect/token", data=form, auth=("pax-demo", "s3cr3t!"))
    assert good.status_code == 200
    assert good.json()["token_type"] == "Bearer" and good.json()["expires_in"] == 3600
    assert good.json()["scope"] == "pos_integration"


async def test_validation_errors_name_the_field(api: Api) -> None:
    session = await api.session()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"transactionId": ""}, "transactionId"),
        ({"transactionAmount": "lots"}, "transactionAmount"),
        ({"transactionAmount": "NaN"}, "transactionAmount"),
        ({"transactionAmount": "1e400"}, "transactionAmount"),
        ({"transactionAmount": 1.1234567}, "transactionAmount"),
        ({"transactionDate": "yesterday"}, "transactionDate"),
        ({"customer": {"firstName": 7}}, "customer.firstName"),
        ({"customer": {"birthDate": "1990-13-45"}}, "customer.birthDate"),
        ({"customer": {"contacts": [{"email": ["a"]}]}}, "customer.contacts[0].email"),
        ({"products": [{"quantity": "two"}]}, "products[0].quantity"),
        ({"products": "p-1"}, "products"),
    ]
    for change, field in cases:
        body = problem(await api.send(seed_transaction(sessionId=session, **change)), 400)
        assert field in body["errors"], (change, body)
    missing = seed_transaction(sessionId=session)
    del missing["terminalId"]
    assert problem(await api.send(missing), 400)["errors"] == {"terminalId": ["is required"]}
    assert await count_rows(api, "transactions") == 0


async def test_malformed_json_is_400(api: Api) -> None:
    token = await api.token()
    for raw in (b"{", b"[1,2]", b"\xff\xfe", b"null", b""):
        answer = await api.http.post(
            "/pos/pax/transaction",
            content=raw,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        problem(answer, 400)


async def test_other_content_type_is_415(api: Api) -> None:
    token = await api.token()
    answer = await api.http.post(
        "/pos/pax/transaction",
        content=json.dumps(seed_transaction()),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    problem(answer, 415)


async def test_body_over_one_mebibyte_is_413(api: Api) -> None:
    token = await api.token()
    big = json.dumps(seed_transaction(purchaseName="x" * (1024 * 1024)))
    answer = await api.http.post(
        "/pos/pax/transaction",
        content=big,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    problem(answer, 413)


async def test_unknown_route_and_method(api: Api) -> None:
    problem(await api.http.get("/pos/pax/nothing-here"), 404)
    problem(await api.http.get("/pos/pax/transaction"), 405)


async def test_reversals_and_exact_amounts(api: Api) -> None:
    customer = {"id": "dec-1", "contacts": [{"email": "dec@example.com"}]}
    for amount in ("0.1", "0.2"):
        answer = await api.tender(seed_transaction(customer=customer, transactionAmount=amount, loyalty=None))
        assert answer.status_code == 200
    refund = await api.tender(
        seed_transaction(customer=customer, transactionAmount="0.05", transactionType="Refund", loyalty=None)
    )
    assert refund.status_code == 200
    [profile] = await fetch(api, select(tables.profiles).where(tables.profiles.c.email == "dec@example.com"))
    assert profile.lifetime_spend == Decimal("0.25")
    assert profile.visit_count == 2
    rows = await fetch(api, text("SELECT is_reversal FROM transactions ORDER BY received_at"))
    assert [bool(r.is_reversal) for r in rows] == [False, False, True]


async def test_offset_dates_are_kept_and_missing_dates_are_now(api: Api) -> None:
    a = await api.tender(seed_transaction(transactionDate="2026-11-26T10:15:00+01:00"))
    b = await api.tender(seed_transaction(transactionDate=None))
    [ra] = await fetch(
        api,
        select(tables.transactions.c.occurred_at).where(tables.transactions.c.id == a.json()["data"]["id"]),
    )
    [rb] = await fetch(
        api,
        select(tables.transactions.c.occurred_at).where(tables.transactions.c.id == b.json()["data"]["id"]),
    )
    assert ra.occurred_at == datetime(2026, 11, 26, 9, 15, tzinfo=UTC)
    assert abs(rb.occurred_at - datetime.now(UTC)) < timedelta(minutes=1)


async def test_everything_commits_atomically_or_not_at_all(api: Api) -> None:
    services = api.app.app.state.services

    async def exploding(tx: Any, sale: Any) -> Any:
        raise RuntimeError("marketing failed after the profile was written")

    services.react = exploding
    session = await api.session()
    answer = await api.send(seed_transaction(sessionId=session))
    assert answer.status_code == 500
    assert "Traceback" not in answer.text and "marketing failed" not in answer.text
    for table in ("transactions", "profiles", "profile_identifiers"):
        assert await count_rows(api, table) == 0, table
    # Nothing stored: the session is still unused and carries the sale once marketing works again.
    services.react = no_reaction
    again = await api.send(seed_transaction(sessionId=session))
    assert again.status_code == 200, again.text


async def test_a_pos_reads_back_the_stored_answer(api: Api) -> None:
    body = seed_transaction()
    first = await api.tender(body)
    token = {"Authorization": f"Bearer {await api.token()}"}
    stored = await api.http.get(f"/pos/pax/transaction/{body['transactionId']}", headers=token)
    assert stored.status_code == 200 and stored.content == first.content
    assert stored.headers["content-type"].startswith("application/json")
    named = await api.http.get(
        f"/pos/pax/transaction/{body['transactionId']}", params={"posCompanyId": "comp5"}, headers=token
    )
    assert named.content == first.content
    other_company = await api.http.get(
        f"/pos/pax/transaction/{body['transactionId']}", params={"posCompanyId": "comp6"}, headers=token
    )
    assert problem(other_company, 404)["type"].endswith("transaction-not-found")
    problem(await api.http.get("/pos/pax/transaction/never-sent", headers=token), 404)
    clover = {"Authorization": f"Bearer {await api.token('clover')}"}
    problem(await api.http.get(f"/pos/pax/transaction/{body['transactionId']}", headers=clover), 403)
    # Another POS system never sees pax's transactions, even with the same id.
    problem(await api.http.get(f"/pos/clover/transaction/{body['transactionId']}", headers=clover), 404)
    problem(await api.http.get(f"/pos/pax/transaction/{body['transactionId']}"), 401)


async def test_reading_back_a_transaction_id_two_companies_share_needs_the_company(api: Api) -> None:
    shared_id = unique("shared")
    await api.tender(seed_transaction(transactionId=shared_id))
    await api.tender(seed_transaction(transactionId=shared_id, terminalId="term9", posLocationId="loc9"))
    token = {"Authorization": f"Bearer {await api.token()}"}
    body = problem(await api.http.get(f"/pos/pax/transaction/{shared_id}", headers=token), 400)
    assert "posCompanyId" in body["errors"]
    named = await api.http.get(
        f"/pos/pax/transaction/{shared_id}", params={"posCompanyId": "comp6"}, headers=token
    )
    assert named.status_code == 200 and named.json()["data"]["profile"] is not None


def test_request_fingerprints_stay_what_stored_transactions_hold() -> None:
    """Replays of transactions stored by earlier versions must still match their fingerprint."""
    import msgspec

    from cmc import validation
    from cmc_client import wire
    from support import SEED_TRANSACTION

    full = dict(SEED_TRANSACTION, sessionId="s-1", transactionId="tx-fixed")
    minimal = {"sessionId": "s", "transactionId": "t-min", "terminalId": "term5", "posLocationId": "loc5"}
    for body, expected in (
        (full, "63a0b8bffaf46174fe2d97a0767003721bf4910776ec123d2f50a2891fe6ce1c"),
        (minimal, "cb9c458bb6f7c2d53f29396c3fa4d7922dca5abfb060e60d373654048d3a5daa"),
        (dict(minimal, products=None), "cb9c458bb6f7c2d53f29396c3fa4d7922dca5abfb060e60d373654048d3a5daa"),
    ):
        tx = msgspec.json.decode(json.dumps(body).encode(), type=wire.TransactionRequest)
        assert validation.request_hash(tx) == expected


async def test_explicit_nulls_read_as_absent(api: Api) -> None:
    body = seed_transaction(products=None)
    body["customer"]["contacts"] = None
    answer = await api.tender(body)
    assert answer.status_code == 200, answer.text
    lines = seed_transaction()
    lines["products"][0]["quantity"] = None
    answer = await api.tender(lines)
    assert answer.status_code == 200, answer.text
    # Null and absent are the same body: the replay with [] is not a conflict.
    again = dict(body, products=[], sessionId=await api.session())
    again["customer"] = dict(body["customer"], contacts=[])
    assert (await api.send(again)).content == (await api.send(body)).content


@pytest.mark.parametrize(
    "spelling",
    ['" 12 "', '"\uff11\uff12"', '"1_2"', "1.2e1"],
    ids=["spaces", "full-width", "underscore", "exponent"],
)
async def test_an_amount_spelled_otherwise_is_the_same_number_and_a_replay(api: Api, spelling: str) -> None:
    """``Decimal`` reads these as 12 (docs/behaviour.md, lenient where harmless): stored as 12, so
    the same sale sent with ``12`` is its replay, not a 409."""
    body = seed_transaction(transactionAmount=12, sessionId=await api.session())
    raw = json.dumps(body, ensure_ascii=False).replace(
        '"transactionAmount": 12', f'"transactionAmount": {spelling}'
    )
    assert spelling in raw
    headers = {"Authorization": f"Bearer {await api.token()}", "Content-Type": "application/json"}
    first = await api.http.post("/pos/pax/transaction", content=raw.encode(), headers=headers)
    assert first.status_code == 200, first.text
    again = await api.send(dict(body, sessionId=await api.session()))
    assert again.content == first.content
    assert await count_rows(api, "transactions") == 1


async def test_contacts_and_products_are_bounded(api: Api) -> None:
    from cmc_client.wire import MAX_CONTACTS, MAX_PRODUCTS

    many = seed_transaction()
    many["customer"]["contacts"] = [{"email": f"c{n}@example.com"} for n in range(MAX_CONTACTS + 1)]
    body = problem(await api.tender(many), 400)
    assert "customer.contacts" in body["errors"]
    basket = seed_transaction(products=[{"productId": f"p{n}"} for n in range(MAX_PRODUCTS + 1)])
    assert "products" in problem(await api.tender(basket), 400)["errors"]


async def test_a_dry_run_without_a_usable_session_tells_nothing(api: Api) -> None:
    """A dry run once answered the stored profile's name and phone to anyone naming an email."""
    first = seed_transaction()
    assert (await api.tender(first)).status_code == 200
    probe = seed_transaction(customer={"contacts": [{"email": "ada@example.com"}]}, loyalty=None)
    for session in ("no-such-session", first["sessionId"]):  # unknown, then used by another sale
        answer = await api.send(dict(probe, sessionId=session), params={"dryRun": "true"})
        assert answer.status_code in {404, 409}, answer.text
        assert "Lovelace" not in answer.text and "555" not in answer.text
    usable = await api.send(dict(probe, sessionId=await api.session()), params={"dryRun": "true"})
    assert usable.status_code == 200  # with a session a real transaction could use, it answers as one
