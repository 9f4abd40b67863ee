"""An in-memory CMC for SDK tests, served through ``httpx2.MockTransport``, with scriptable faults.

It keeps the contract the real service keeps: tokens, sessions bound to one transaction, idempotent
transactions (a replay with the identical body answers the first response; a different body is 409),
and the stored answer of a transaction (``GET /pos/{pos}/transaction/{id}``, for reconciliation).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import uuid
from collections import defaultdict
from typing import Any

import httpx2
import msgspec

from cmc_client import wire

ENCODER = msgspec.json.Encoder(decimal_format="number")
BASIC = "Basic " + base64.b64encode(b"pax-demo:s3cr3t!").decode()


URL = "https://cmc.test"


class Clock:
    """The SDK's clock in a test: seconds since the epoch that pass only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0  # 2023-11-14T22:13:20Z

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeCmc:
    """A MockTransport handler. ``faults[endpoint]`` is a list of faults used up one per request.

    Endpoints: ``token``, ``settings``, ``start``, ``transaction``, ``lookup``. Faults: ``"network"`` (connect
    error), ``"hang"`` (block until ``release`` is set, then a read timeout), ``"hold"`` (block until
    ``release`` is set, then answer as usual), ``"lose-answer"`` (commit, then a read error),
    ``"session-expired"`` / ``"session-unknown"`` (410 / 404 for the session), or an int status.
    """

    def __init__(self) -> None:
        self.faults: dict[str, list[Any]] = defaultdict(list)
        self.calls: list[tuple[str, bytes]] = []
        self.valid_tokens: set[str] = set()
        self.tokens_issued = 0
        self.token_ttl = 3600
        self.transactions_enabled = True
        self.pos_status = "Accepted"
        self.sessions: dict[str, str | None] = {}
        self.committed: dict[str, tuple[bytes, bytes]] = {}
        self.shared_ids: set[str] = set()
        """transactionIds two companies use: a lookup without posCompanyId is a 400."""
        self.lookups: list[httpx2.URL] = []
        self.release = threading.Event()
        self.holding = threading.Event()
        """Set once a ``hold`` fault holds a request."""
        self.retry_after = "0"
        self._lock = threading.Lock()

    def sync_transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self)

    def async_transport(self) -> httpx2.MockTransport:
        """For AsyncClient: a ``hang`` must not block the event loop."""

        async def handle(request: httpx2.Request) -> httpx2.Response:
            endpoint = _endpoint(request)
            body = await request.aread()
            with self._lock:
                fault = self.faults[endpoint][0] if self.faults[endpoint] else None
                if fault == "hang":
                    self.faults[endpoint].pop(0)
                    self.calls.append((endpoint, body))
            if fault == "hang":
                await asyncio.to_thread(self.release.wait, 5)
                raise httpx2.ReadTimeout("hung", request=request)
            if fault == "hold":
                self.holding.set()
                await asyncio.to_thread(self.release.wait, 5)
            return self(request)

        return httpx2.MockTransport(handle)

    def count(self, endpoint: str) -> int:
        return sum(1 for name, _ in self.calls if name == endpoint)

    def bodies(self, endpoint: str) -> list[bytes]:
        return [body for name, body in self.calls if name == endpoint]

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        endpoint = _endpoint(request)
        body = request.read()
        with self._lock:
            self.calls.append((endpoint, body))
            fault = self.faults[endpoint].pop(0) if self.faults[endpoint] else None
        if fault == "network":
            raise httpx2.ConnectError("connection refused", request=request)
        if fault == "hang":
            self.release.wait(5)
            raise httpx2.ReadTimeout("hung", request=request)
        if fault == "hold":
            self.holding.set()
            self.release.wait(5)
        if isinstance(fault, int):
            headers = {"Retry-After": self.retry_after} if fault == 429 else {}
            return problem(fault, f"fault {fault}", headers=headers)
        if endpoint == "token":
            return self._token(request)
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.valid_tokens:
            return problem(401, "Unauthorized")
        if endpoint == "settings":
            return self._settings()
        if endpoint == "start":
            return self._start(body)
        if endpoint == "lookup":
            return self._lookup(request.url)
        response = self._transaction(body, fault)
        if fault == "lose-answer":
            raise httpx2.ReadError("connection reset after the server committed", request=request)
        return response

    def _token(self, request: httpx2.Request) -> httpx2.Response:
        if request.headers.get("authorization") != BASIC:
            return problem(400, "invalid_client")
        assert request.content == b"grant_type=client_credentials&scope=pos_integration"
        with self._lock:
            self.tokens_issued += 1
            token = f"tok{self.tokens_issued}"
            self.valid_tokens.add(token)
        return json(wire.TokenResponse(access_token=token, expires_in=self.token_ttl))

    def _settings(self) -> httpx2.Response:
        flags = wire.CompanySettings(isTransactionsEnabled=self.transactions_enabled)
        data = wire.SettingsData(companySettings=flags, notificationSettings=wire.NotificationSettings())
        return json(wire.SettingsResponse(data=data))

    def _start(self, body: bytes) -> httpx2.Response:
        request = msgspec.json.decode(body, type=wire.StartInteractionRequest)
        session = str(uuid.uuid4()) if self.pos_status == "Accepted" else None
        if session:
            self.sessions[session] = None
        data = wire.StartInteractionData(
            terminalId=request.terminalId,
            posLocationId=request.posLocationId,
            sessionId=session,
            posStatus=self.pos_status,  # type: ignore[arg-type]
        )
        return json(wire.StartInteractionResponse(data=data))

    def _transaction(self, body: bytes, fault: object) -> httpx2.Response:
        tx = msgspec.json.decode(body, type=wire.TransactionRequest)
        with self._lock:
            if fault in ("session-expired", "session-unknown") or tx.sessionId not in self.sessions:
                return problem(410 if fault == "session-expired" else 404, "Session not usable")
            if tx.transactionId in self.committed:
                first_body, first_answer = self.committed[tx.transactionId]
                if first_body != body:
                    return problem(409, "transactionId already used with a different body")
                return httpx2.Response(
                    200, content=first_answer, headers={"content-type": "application/json"}
                )
            if self.sessions[tx.sessionId] is not None:
                return problem(409, "Session already used")
            self.sessions[tx.sessionId] = tx.transactionId
            answer = ENCODER.encode(full_response(tx, len(self.committed) + 1))
            self.committed[tx.transactionId] = (body, answer)
        return httpx2.Response(200, content=answer, headers={"content-type": "application/json"})

    def _lookup(self, url: httpx2.URL) -> httpx2.Response:
        self.lookups.append(url)
        tx_id = url.path.rsplit("/", 1)[-1]
        if tx_id in self.shared_ids and "posCompanyId" not in url.params:
            return problem(400, "Bad Request", kind="bad-request")
        if tx_id not in self.committed:
            return problem(404, "Not Found", kind="transaction-not-found")
        return httpx2.Response(
            200, content=self.committed[tx_id][1], headers={"content-type": "application/json"}
        )


def _endpoint(request: httpx2.Request) -> str:
    path = request.url.path.lower()
    if request.method == "GET" and "/transaction/" in path:
        return "lookup"
    return next(
        name
        for suffix, name in (
            ("/connect/token", "token"),
            ("/settings/lookup", "settings"),
            ("/startinteraction", "start"),
            ("/transaction", "transaction"),
        )
        if path.endswith(suffix)
    )


def full_response(tx: wire.TransactionRequest, number: int) -> wire.TransactionResponse:
    """Everything the seed names: profile, QR widget URLs, CFS template, message id."""
    link = f"https://cmc.test/s/abc{number}"
    profile = wire.Profile(id=f"prof-{number}", firstName="Ada", customerEmail="ada@example.com")
    widget = wire.QrCodeWidget(
        widgetId=7,
        shortLinkUrl=link,
        qrCodeLinkUrl=f"{link}/qr.png",
        qrCodeHtmlLinkUrl=f"{link}/qr.html",
        qrCodePreviewLinkUrl=f"{link}/preview",
        qrCode=wire.QrCodeLinks(htmlLinkUrl=f"{link}/qr.html", previewHtmlLinkUrl=f"{link}/preview"),
        notificationMessageId=f"msg-{number}",
        profile=profile,
        sessionId=tx.sessionId,
    )
    data = wire.TransactionData(
        id=f"tx-{number}",
        qrCodeWidget=widget,
        cfsTemplate=wire.CfsTemplate(accountTemplateId=3, cfsCarouselUrl="https://cmc.test/cfs/3"),
        posStatus="Accepted",
        profile=profile,
        sessionId=tx.sessionId,
        notificationMessageId=f"msg-{number}",
    )
    return wire.TransactionResponse(data=data)


def json(value: object, status: int = 200) -> httpx2.Response:
    return httpx2.Response(
        status, content=ENCODER.encode(value), headers={"content-type": "application/json"}
    )


def problem(
    status: int, title: str, *, headers: dict[str, str] | None = None, kind: str | None = None
) -> httpx2.Response:
    """A problem+json answer; ``kind`` is CMC's problem slug (``type`` is then ``urn:cmc:problem:KIND``)."""
    type_ = f"urn:cmc:problem:{kind}" if kind else "about:blank"
    body = msgspec.json.encode(wire.Problem(type=type_, title=title, status=status))
    return httpx2.Response(
        status, content=body, headers={"content-type": "application/problem+json", **(headers or {})}
    )
