"""Inputs that once gave a 500: each is a 400 naming the field, on both backends alike, storing nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from support import Api, count_rows, seed_transaction


async def post_raw(api: Api, raw: bytes) -> Any:
    headers = {"Authorization": f"Bearer {await api.token()}", "Content-Type": "application/json"}
    return await api.http.post("/pos/pax/transaction", content=raw, headers=headers)


def problem(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    return body


async def test_an_amount_too_large_for_any_decimal(api: Api) -> None:
    body = seed_transaction(sessionId=await api.session())
    raw = json.dumps(body).replace('"transactionAmount": 23.47', '"transactionAmount": 1e999999999')
    assert "1e999999999" in raw
    assert problem(await post_raw(api, raw.encode()))["errors"] == {"transactionAmount": ["is too large"]}


async def test_a_raw_0xff_byte_inside_a_string(api: Api) -> None:
    raw = (
        json.dumps(seed_transaction(sessionId=await api.session()))
        .encode()
        .replace(b"Lovelace", b"Love\xfflace")
    )
    assert "UTF-8" in problem(await post_raw(api, raw))["detail"]


async def test_an_unknown_field_nested_ten_thousand_levels_deep(api: Api) -> None:
    raw = json.dumps(seed_transaction(sessionId=await api.session())).encode()
    raw = raw[:-1] + b', "deep": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    assert "nests too deeply" in problem(await post_raw(api, raw))["detail"]


@pytest.mark.parametrize(
    ("where", "path"),
    [
        (("customer", "firstName"), "customer.firstName"),
        (("transactionId",), "transactionId"),
        (("products", 0, "productName"), "products[0].productName"),
        (("customer", "contacts", 0, "email"), "customer.contacts[0].email"),
    ],
)
async def test_nul_in_text_is_refused_everywhere(api: Api, where: tuple[Any, ...], path: str) -> None:
    body = seed_transaction(sessionId=await api.session())
    holder: Any = body
    for step in where[:-1]:
        holder = holder[step]
    holder[where[-1]] = "a\u0000b"
    answer = problem(await api.send(body))
    assert answer["errors"] == {path: ["must not contain NUL (\\u0000)"]}
    assert await count_rows(api, "transactions") == 0


async def test_the_same_inputs_at_start_interaction(api: Api) -> None:
    headers = {"Authorization": f"Bearer {await api.token()}", "Content-Type": "application/json"}
    for raw in (b'{"terminalId": "t\\u0000", "posLocationId": "loc5"}', b'{"terminalId": "\xff"}',
                b'{"terminalId": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"):  # fmt: skip
        answer = await api.http.post("/pos/pax/startInteraction", content=raw, headers=headers)
        assert answer.status_code == 400, answer.text
