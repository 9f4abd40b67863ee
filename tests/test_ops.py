"""Ops endpoints and cross-cutting behaviour: health, readiness, metrics, OpenAPI, request ids, logs."""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import pytest

from support import Api, seed_transaction


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    total, found = 0.0, False
    for line in text.splitlines():
        sample = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$", line)
        if not sample or sample.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', sample.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total, found = total + float(sample.group(3)), True
    assert found, f"no sample {name}{labels}"
    return total


async def scrape(api: Api) -> str:
    answer = await api.http.get("/metrics")
    assert answer.status_code == 200
    return answer.text


# --- health and readiness ----------------------------------------------------------------------


async def test_health(api: Api) -> None:
    answer = await api.http.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ok"}


async def test_ready(api: Api) -> None:
    answer = await api.http.get("/ready")
    assert answer.status_code == 200
    assert answer.json()["status"] == "ready"


async def test_ops_endpoints_need_no_token(api: Api) -> None:
    for path in ("/health", "/ready", "/metrics", "/schema/openapi.json"):
        assert (await api.http.get(path)).status_code == 200, path


# --- metrics -----------------------------------------------------------------------------------


async def test_metrics_is_prometheus_text(api: Api) -> None:
    await api.http.get("/health")
    answer = await api.http.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert "# TYPE cmc_http_requests_total counter" in text
    assert "# TYPE cmc_http_request_duration_seconds histogram" in text
    assert metric(text, "cmc_http_requests_total", method="GET", route="/health", status="200") == 1
    assert metric(text, "cmc_http_request_duration_seconds_bucket", route="/health", le="+Inf") == 1
    assert metric(text, "cmc_http_request_duration_seconds_count", route="/health") == 1


async def test_metrics_count_requests_by_route_template_and_status(api: Api) -> None:
    await api.tender()
    await api.http.post("/pos/pax/startInteraction", json={"terminalId": "term5", "posLocationId": "loc5"})
    await api.http.get("/no/such/page")
    text = await scrape(api)
    start = "/pos/{pos_system_id}/startInteraction"
    assert metric(text, "cmc_http_requests_total", method="POST", route=start, status="200") == 1
    assert metric(text, "cmc_http_requests_total", method="POST", route=start, status="401") == 1
    assert metric(text, "cmc_http_requests_total", route="/connect/token", status="200") == 1
    # Path parameters never become label values (bounded cardinality).
    assert 'route="/pos/pax/' not in text
    assert "/no/such/page" not in text
    assert metric(text, "cmc_http_requests_total", route="unmatched", status="404") == 1


async def test_metrics_count_transactions_by_outcome(api: Api) -> None:
    body = seed_transaction()
    first = await api.tender(body)
    assert first.status_code == 200, first.text
    text = await scrape(api)
    assert metric(text, "cmc_transactions_total", outcome="created") == 1
    assert 'cmc_transactions_total{outcome="replayed"}' not in text

    again = await api.send(body)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    text = await scrape(api)
    assert metric(text, "cmc_transactions_total", outcome="created") == 1
    assert metric(text, "cmc_transactions_total", outcome="replayed") == 1

    await api.tender()
    assert metric(await scrape(api), "cmc_transactions_total", outcome="created") == 2


async def test_each_app_has_its_own_metrics(api_factory: Callable[..., Any]) -> None:
    async with api_factory() as api:
        await api.tender()
        assert metric(await scrape(api), "cmc_transactions_total", outcome="created") == 1


# --- OpenAPI -----------------------------------------------------------------------------------


@pytest.fixture
async def openapi(api: Api) -> dict[str, Any]:
    answer = await api.http.get("/schema/openapi.json")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = answer.json()
    return document


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow ``$ref`` to ``#/components/schemas/...``."""
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


SEED_REQUEST_FIELDS = {
    "sessionId", "transactionId", "terminalId", "posLocationId", "customer", "salesPerson", "products",
    "loyalty", "cardNumber", "transactionType", "transactionAmount", "transactionDate",
    "purchaseName", "purchaseId", "purchaseQuantity", "purchasePrice",
}  # fmt: skip


def test_openapi_is_3_1(openapi: dict[str, Any]) -> None:
    assert openapi["openapi"].startswith("3.1")
    assert openapi["info"]["title"]
    assert openapi["info"]["version"]
    for path in ("/pos/{posSystemId}/startInteraction", "/pos/{posSystemId}/transaction", "/connect/token"):
        operation = openapi["paths"][path]["post"]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"], path
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}, (path, method)
            assert operation["operationId"], (path, method)
            for parameter in operation.get("parameters", []):
                assert parameter["in"] in {"path", "header", "query"}, (path, parameter)
                assert parameter["in"] != "path" or "{" + parameter["name"] + "}" in path
    operation_ids = [op["operationId"] for item in openapi["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_openapi_refs_all_resolve(openapi: dict[str, Any]) -> None:
    refs = re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(openapi))
    assert refs
    schemas = openapi["components"]["schemas"]
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in schemas, ref


def test_openapi_describes_the_transaction_request(openapi: dict[str, Any]) -> None:
    operation = openapi["paths"]["/pos/{posSystemId}/transaction"]["post"]
    assert operation["security"] == [{"bearer": []}]
    assert [p["name"] for p in operation["parameters"]] == ["posSystemId"]
    content = operation["requestBody"]["content"]
    assert {"application/json", "application/json-patch+json"} <= set(content)
    request = resolve(openapi, content["application/json"]["schema"])
    assert request is openapi["components"]["schemas"]["TransactionRequest"]
    assert set(request["properties"]) >= SEED_REQUEST_FIELDS
    assert {"sessionId", "transactionId", "terminalId", "posLocationId"} <= set(request.get("required", []))
    assert {"400", "401", "403", "404", "409", "410", "413", "415"} <= set(operation["responses"])


def test_openapi_describes_the_transaction_response(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    data = schemas["TransactionData"]
    assert {"id", "qrCodeWidget", "cfsTemplate", "posStatus", "profile"} <= set(data["properties"])
    profile = schemas["Profile"]
    assert {"id", "firstName", "lastName", "customerEmail", "customerPhone", "salesPerson", "gender"} <= set(
        profile["properties"]
    )
    widget = schemas["QrCodeWidget"]
    assert {"shortLinkUrl", "qrCodeLinkUrl", "qrCodeHtmlLinkUrl", "qrCodePreviewLinkUrl"} <= set(
        widget["properties"]
    )
    response = openapi["paths"]["/pos/{posSystemId}/transaction"]["post"]["responses"]["200"]
    envelope = resolve(openapi, response["content"]["application/json"]["schema"])
    assert resolve(openapi, envelope["properties"]["data"]) is data


def test_openapi_describes_start_interaction_and_token(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert {"terminalId", "posLocationId", "posCompanyId"} <= set(
        schemas["StartInteractionRequest"]["properties"]
    )
    assert {"terminalId", "posLocationId", "sessionId", "posStatus"} <= set(
        schemas["StartInteractionData"]["properties"]
    )
    token = openapi["paths"]["/connect/token"]["post"]
    assert token["security"] == [{"basic": []}]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    answer = resolve(openapi, token["responses"]["200"]["content"]["application/json"]["schema"])
    assert {"access_token", "token_type", "expires_in", "scope"} <= set(answer["properties"])
    assert {"bearer", "basic"} <= set(openapi["components"]["securitySchemes"])


# --- request ids -------------------------------------------------------------------------------

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


async def test_every_response_carries_a_request_id(api: Api) -> None:
    answers = [
        await api.http.get("/health"),
        await api.http.get("/metrics"),
        await api.http.get("/no/such/page"),
        await api.http.post("/pos/pax/startInteraction", json={}),
        await api.http.post("/connect/token", data={"grant_type": "client_credentials"}),
        await api.start(),
        await api.tender(),
        await api.send(seed_transaction(sessionId="no-such-session")),
        await api.post("/pos/pax/transaction", "not an object"),
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 404, 401, 401, 200, 200, 404, 400]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(REQUEST_ID.match(i) for i in ids), ids
    assert len(set(ids)) == len(ids)
    for answer in answers:
        assert len(answer.headers.get_list("x-request-id")) == 1


@pytest.mark.parametrize("incoming", ["abc-123", "7f9c2ba4e88f827d616045507605853e", "pos.term5:42_x"])
async def test_an_incoming_request_id_is_echoed(api: Api, incoming: str) -> None:
    health = await api.http.get("/health", headers={"X-Request-ID": incoming})
    start = await api.post(
        "/pos/pax/startInteraction",
        {"terminalId": "term5", "posLocationId": "loc5"},
        headers={"X-Request-ID": incoming},
    )
    for answer in (health, start):
        assert answer.headers["x-request-id"] == incoming


@pytest.mark.parametrize("incoming", ["has space", "x" * 101, "semi;colon", "new\\nline", ""])
async def test_an_invalid_request_id_is_replaced(api: Api, incoming: str) -> None:
    answer = await api.http.get("/health", headers={"X-Request-ID": incoming})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] != incoming
    assert REQUEST_ID.match(answer.headers["x-request-id"])


# --- logs --------------------------------------------------------------------------------------


async def test_logs_are_json_with_a_request_id_and_no_contacts(
    api_factory: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    email, phone, e164 = "Zelda.Quux+cmc@Example.org", "(415) 555-0199", "+14155550199"
    other = "second.zq@example.org"
    async with api_factory(access_log=True, log_level="debug") as api:
        body = seed_transaction(
            customer={
                "id": "cust-logs",
                "firstName": "Zelda",
                "contacts": [
                    {"email": email, "phone": phone},
                    {"type": "Email", "value": "second.zq@example.org"},
                ],
            }
        )
        answer = await api.tender(body)
        assert answer.status_code == 200, answer.text
        profile = answer.json()["data"]["profile"]
        assert profile["customerEmail"] == email.lower()
        assert profile["customerPhone"] == e164
        # A replay and a conflicting body log too.
        assert (await api.send(body)).status_code == 200
        conflicting = {**body, "transactionAmount": 1}
        assert (await api.send(conflicting)).status_code == 409
        request_id = answer.headers["x-request-id"]
    captured = capfd.readouterr()
    output = captured.out + captured.err
    for secret in (email, email.lower(), phone, e164, e164[1:], "555-0199", other):
        assert secret.lower() not in output.lower(), secret
    records = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request"]
    assert access, captured.err[-2000:]
    assert all(r.get("request_id") for r in access)
    assert request_id in {r["request_id"] for r in access}
    tender = next(r for r in access if r["request_id"] == request_id)
    assert tender["route"] == "/pos/{pos_system_id}/transaction"
    assert tender["status"] == 200
    assert tender["method"] == "POST"
    assert "level" in tender
    assert "timestamp" in tender


async def test_a_second_app_logs_with_its_own_settings(
    api_factory: Callable[..., Any], capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with api_factory(access_log=True, log_level="debug") as api:
        await api.http.get("/health")
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    async with api_factory(access_log=True, log_level="debug") as api:
        answer = await api.http.get("/health", headers={"X-Request-ID": "second-app"})
    assert answer.status_code == 200
    assert '"request_id": "second-app"' in stream.getvalue()
