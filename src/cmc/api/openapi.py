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
from cmc import analytics as domain
from cmc.api import analytics
from cmc.merchant import wire as merchant
from cmc_client import wire

JSON_BODY = ("application/json", "application/json-patch+json")
MERCHANT = "/v1/pos/{posSystemId}/companies/{companyId}"


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
    status: int = 200
    headers: tuple[str, ...] = ()
    """Request headers the operation reads (``If-Match``, ``Idempotency-Key``)."""
    query: tuple[str, ...] = ()


OPERATIONS = (
    Operation("post", "/connect/token", "Get an access token (OAuth2 client credentials, HTTP Basic)",
              None, wire.TokenResponse, (400, 401, 415, 429), auth=False, form=True),
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
    Operation("get", f"{MERCHANT}/marketing", "The active marketing document (ETag: its version)",
              None, merchant.VersionAnswer, (401, 403, 404)),
    Operation("get", f"{MERCHANT}/marketing/versions", "List marketing versions (newest first)",
              None, merchant.VersionList, (401, 403, 404)),
    Operation("post", f"{MERCHANT}/marketing/versions", "Create a draft version (every problem at once)",
              merchant.NewVersion, merchant.DraftAnswer, (400, 401, 403, 404, 409, 413, 415, 422),
              status=201, headers=("Idempotency-Key",)),
    Operation("get", f"{MERCHANT}/marketing/versions/{{version}}", "Get a version",
              None, merchant.VersionAnswer, (401, 403, 404)),
    Operation("post", f"{MERCHANT}/marketing/versions/{{version}}/simulate",
              "Simulate a version on stored sales against the active one (writes nothing)",
              merchant.SimulationRequest, merchant.SimulationAnswer, (400, 401, 403, 404, 409, 415, 422),
              headers=("Idempotency-Key",)),
    Operation("post", f"{MERCHANT}/marketing/versions/{{version}}/activate",
              "Activate a version (rollback: an older one)",
              None, merchant.ActivatedAnswer, (401, 403, 404, 409, 412, 422, 428),
              headers=("If-Match", "Idempotency-Key")),
    Operation("get", f"{MERCHANT}/audit", "The audit trail (newest first, cursor pagination)",
              None, merchant.AuditPage, (400, 401, 403, 404), query=("cursor",)),
    Operation("get", f"{MERCHANT}/analytics/summary", "Analytics summary of a window",
              None, analytics.SummaryAnswer, (400, 401, 403, 404), query=("from", "to")),
    Operation("get", f"{MERCHANT}/analytics/timeseries", "A metric per UTC hour or day, every bucket present",
              None, analytics.SeriesAnswer, (400, 401, 403, 404),
              query=("metric", "bucket", "from", "to", "rule")),
    Operation("get", f"{MERCHANT}/rules/{{ruleName}}/lift", "A rule's lift over its holdout",
              None, analytics.LiftAnswer, (400, 401, 403, 404), query=("days", "from", "to")),
    Operation("get", f"{MERCHANT}/customers", "Find customers by email, phone, card, POS id or name",
              None, domain.CustomerPage, (400, 401, 403, 404), query=("query", "cursor", "limit")),
    Operation("get", f"{MERCHANT}/customers/{{profileId}}", "A customer's profile and timeline",
              None, analytics.TimelineAnswer, (401, 403, 404)),
    Operation("get", f"{MERCHANT}/messages", "The message log (newest first, cursor pagination)",
              None, domain.MessagePage, (400, 401, 403, 404), query=("state", "channel", "cursor", "limit")),
    Operation("post", f"{MERCHANT}/messages/{{messageId}}/retry", "Retry a dead message (editor and up)",
              None, analytics.MessageAnswer, (401, 403, 404, 409, 422), headers=("Idempotency-Key",)),
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
        "info": {"title": "CMC API: the POS API and the merchant API", "version": __version__},
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
    ok = str(op.status)
    responses: dict[str, Any] = {ok: {"description": _REASONS.get(op.status, "OK")}}
    if op.response is not None:
        responses[ok]["content"] = {"application/json": {"schema": refs[op.response]}}
    responses.update({str(code): {"description": _REASONS[code], "content": problem} for code in op.errors})
    result: dict[str, Any] = {
        "summary": op.summary,
        "operationId": op.summary.split(":")[0].split(" (")[0].replace(" ", ""),
        "responses": responses,
        "security": [{"bearer": []}] if op.auth else [{"basic": []}],
    }
    names = [part[1:-1] for part in op.path.split("/") if part.startswith("{")]
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}} for name in names
    ]
    parameters += [
        {"name": name, "in": "header", "required": name == "If-Match", "schema": {"type": "string"}}
        for name in op.headers
    ]
    parameters += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in op.query
    ]
    if parameters:
        result["parameters"] = parameters
    if op.request is not None:
        content = {media: {"schema": refs[op.request]} for media in JSON_BODY}
        result["requestBody"] = {"required": True, "content": content}
    elif op.form:
        form_schema = {
            "type": "object",
            "required": ["grant_type"],
            "properties": {
                "grant_type": {"type": "string", "enum": ["client_credentials"]},
                "scope": {"type": "string", "enum": ["pos_integration", "merchant"]},
            },
        }
        result["requestBody"] = {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": form_schema}},
        }
    return result


_REASONS = {
    201: "Created (Location names the new version)",
    400: "Invalid request (problem details with per-field errors)",
    401: "Missing, invalid or expired credentials",
    403: "The token may not act here: another POS system, the other API, or a role without the right",
    404: "Unknown POS system, location, terminal, session, version, rule, customer, message; other company",
    409: "A conflict: session used, transactionId reused, a version that no longer fits the registry, "
    "or the retry of a message that is not dead",
    410: "Session expired",
    412: "If-Match names a version that is no longer the active one",
    413: "Body over the size limit",
    415: "Body is not JSON",
    422: "Idempotency-Key reused for a different request",
    428: "If-Match is required",
    429: "Too many failed attempts (Retry-After says when to try again)",
}
