"""The two calls of every tender, StartInteraction and SendTransaction, served as plain ASGI.

A tender is two requests, and the framework's routing, request and response objects cost about as
much as the tender's own work. These two routes read the body, authenticate, call the use case and
write the bytes themselves; every other route (and the OpenAPI document) is Litestar's. Errors are
the same problem details as everywhere (``cmc.api.problems``); the edge around them is the same
(path casing, request ids, metrics, access log).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

import msgspec

from cmc import interactions, tender
from cmc.api.body import decode
from cmc.api.pos import pos_system_of
from cmc.api.problems import MEDIA_TYPE, as_api_error, problem_body
from cmc.api.services import Services
from cmc.errors import ApiError, MethodNotAllowed, PayloadTooLarge
from cmc.registry import PosSystem
from cmc_client import wire

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TEMPLATES = {
    "startInteraction": "/pos/{pos_system_id}/startInteraction",
    "transaction": "/pos/{pos_system_id}/transaction",
}
"""The routes served here (templates as Litestar writes them: metrics and path casing use them)."""
_PATH = re.compile(r"^/pos/([^/]+)/(startInteraction|transaction)$")
_JSON = [(b"content-type", b"application/json")]
_start_decoder = msgspec.json.Decoder(wire.StartInteractionRequest)
_transaction_decoder = msgspec.json.Decoder(wire.TransactionRequest)
_encode = msgspec.json.Encoder().encode


def route_of(path: str) -> tuple[str, str] | None:
    """(posSystemId, route name) when ``path`` (already in canonical case) is one of these routes."""
    match = _PATH.match(path)
    return None if match is None else (unquote(match[1]), match[2])


class HotRoutes:
    """Serves StartInteraction and SendTransaction for the app whose services ``services()`` returns."""

    def __init__(self, services: Callable[[], Services]) -> None:
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: tuple[str, str]) -> None:
        pos_system_id, name = route
        scope["path_template"] = TEMPLATES[name]
        try:
            if scope["method"] != "POST":
                raise MethodNotAllowed()
            services = self._services()
            body = await _body(receive, limit=services.settings.max_body_bytes)
            headers = dict(scope["headers"])
            authorization = headers.get(b"authorization")
            header = authorization.decode("latin-1") if authorization else None
            pos = await pos_system_of(services, header, pos_system_id)
            content_type = (headers.get(b"content-type") or b"").decode("latin-1")
            if name == "startInteraction":
                answer = await _start(services, pos, decode(body, content_type, _start_decoder))
            else:
                dry_run = _dry_run(scope.get("query_string", b""))
                answer = await _transaction(
                    services, pos, decode(body, content_type, _transaction_decoder), dry_run
                )
        except Exception as exc:
            error = as_api_error(exc, path=scope["path"])
            await _respond(
                send, error.status, problem_body(error, instance=scope["path"]), _problem_headers(error)
            )
            return
        await _respond(send, 200, answer, _JSON)


async def _start(services: Services, pos: PosSystem, body: wire.StartInteractionRequest) -> bytes:
    return _encode(interactions.start(services.directory.current, pos, body, now=services.clock()))


async def _transaction(
    services: Services, pos: PosSystem, body: wire.TransactionRequest, dry_run: bool
) -> bytes:
    try:
        answer = await tender.send_transaction(
            services.db,
            services.directory.current,
            pos,
            body,
            now=services.clock(),
            react=services.react,
            session_ttl=services.settings.session_ttl,
            dry_run=dry_run,
        )
    except Exception as exc:
        services.metrics.transactions.labels(type(exc).__name__).inc()
        raise
    services.metrics.transactions.labels(answer.kind).inc()
    return answer.body


async def _body(receive: Receive, *, limit: int) -> bytes:
    """The whole request body, refused past ``limit`` bytes (413) without reading the rest."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _dry_run(query: bytes) -> bool:
    values = parse_qs(query.decode("latin-1")).get("dryRun", [])
    return bool(values) and values[-1].lower() in {"true", "1"}


def _problem_headers(error: ApiError) -> list[tuple[bytes, bytes]]:
    extra = [(name.lower().encode(), value.encode("latin-1")) for name, value in error.headers.items()]
    return [(b"content-type", MEDIA_TYPE.encode()), *extra]


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body})
