"""The OpenAPI document, generated from the same wire Structs the routes decode and encode.

Routes read their bodies themselves (to control content types and error shapes), so the document is
built here from an explicit table rather than inferred from handler signatures: one line per
operation, schemas from msgspec.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import msgspec

from cmc import __version__
from cmc_client import wire

JSON_BODY = ("application/json", "application/json-patch+json")


@dataclass(frozen=True)
class Operation:
    """One documented operation."""

    method: str
    path: str
    summary: str
    request: type | None
    response: type | None
    errors: tuple[int, ...]
    auth: bool = True
    form: bool = False


OPERATIONS = (
    Operation("post", "/connect/token", "Get an access token (OAuth2 client credentials, HTTP Basic)",
              None, wire.TokenResponse, (400, 401, 415), auth=False, form=True),
    Operation("post", "/pos/{posSystemId}/startInteraction", "StartInteraction: open a session",
              wire.StartInteractionRequest, wire.StartInteractionResponse, (400, 401, 403, 404, 413, 415)),
    Operation("post", "/pos/{posSystemId}/transaction", "SendTransaction: post a tender",
              wire.TransactionRequest, wire.TransactionResponse, (400, 401, 403, 404, 409, 410, 413, 415)),
    Operation("get", "/pos/{posSystemId}/transaction/{transactionId}", "GetTransaction: the stored answer",
              None, wire.TransactionResponse, (400, 401, 403, 404)),
    Operation("get", "/v2/pos/{posSystemId}/settings/lookup", "POS settings (guide form)",
              None, wire.SettingsResponse, (401, 403)),
    Operation("post", "/v2/pos/{posSystemId}/settings/lookup", "POS settings for a company",
              wire.SettingsLookupRequest, wire.SettingsResponse, (400, 401, 403, 415)),
)  # fmt: skip


@functools.cache
def document() -> bytes:
    """The OpenAPI 3.1 document as JSON bytes (built once)."""
    types = [t for op in OPERATIONS for t in (op.request, op.response) if t] + [wire.Problem]
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(types, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, refs)
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "CMC POS API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "basic": {"type": "http", "scheme": "basic"},
            },
        },
    }
    return msgspec.json.encode(doc)


def _operation(op: Operation, refs: dict[type, Any]) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": refs[wire.Problem]}}
    responses: dict[str, Any] = {"200": {"description": "OK"}}
    if op.response is not None:
        responses["200"]["content"] = {"application/json": {"schema": refs[op.response]}}
    responses.update({str(code): {"description": _REASONS[code], "content": problem} for code in op.errors})
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.summary.split(":")[0].split(" (")[0].replace(" ", ""),
        "responses": responses,
        "security": [{"bearer": []}] if op.auth else [{"basic": []}],
    }
    names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    if names:
        result["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
        ]
    if op.request is not None:
        content = {media: {"schema": refs[op.request]} for media in JSON_BODY}
        result["requestBody"] = {"required": True, "content": content}
    elif op.form:
        form_schema = {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "scope": {"type": "string", "enum": ["pos_integration"]},
            },
        }
        result["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": form_schema}},
        }
    return result


_REASONS = {
    400: "Invalid request (problem details with per-field errors)",
    401: "Missing, invalid or expired credentials",
    403: "The token may not act for this POS system, or transactions are disabled",
    404: "Unknown POS system, location, terminal or session",
    409: "Session already used, or transactionId reused with a different body",
    410: "Session expired",
    413: "Body over the size limit",
    415: "Body is not JSON",
}
