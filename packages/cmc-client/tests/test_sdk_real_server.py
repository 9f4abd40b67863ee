"""The SDK against the REAL CMC service: in-process (ASGI, lifespan started) and over a loopback socket.

Every check of "exactly once" reads the server's own SQLite file (its ``transactions`` table).
Faults are injected around the real app, never instead of it: a transport that forwards the request
and then drops the answer, one that delays a request past the session's life, a stopped uvicorn, and a
socket that accepts and never answers.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
from real_cmc import (
    CLIENT_ID,
    POS,
    SECRET,
    ThreadServer,
    db_path,
    free_port,
    in_process,
    prepare,
    registry_file,
    rule_firings,
    settings_for,
    tender,
    transaction_counts,
)

from cmc.config import Settings
from cmc_client import AsyncClient, Client, TenderResult

URL = "http://cmc.test"
QR_RULE = "mid-basket coupon"


# --- fault injection around the real app --------------------------------------------------------------


@dataclass
class Faults:
    """What the tap does to ``/transaction`` requests (each counter is used up once per request)."""

    lose_answer: int = 0
    """Forward the request (the server commits), then raise a network error instead of answering."""
    refuse: int = 0
    """Raise a connection error before the request reaches the server."""
    delay: float = 0.0
    """Hold the first request this many seconds before forwarding it."""
    log: list[tuple[str, int]] = field(default_factory=list)
    """(path, status) of every answer the server gave; status 0 when the tap refused the request."""
    bodies: list[bytes] = field(default_factory=list)
    """SendTransaction bodies as sent."""

    def before(self, request: httpx2.Request) -> float:
        if not request.url.path.endswith("/transaction"):
            return 0.0
        self.bodies.append(request.content)
        if self.refuse:
            self.refuse -= 1
            self.log.append((request.url.path, 0))
            raise httpx2.ConnectError("connection refused (injected)", request=request)
        delay, self.delay = self.delay, 0.0
        return delay

    def after(self, request: httpx2.Request, response: httpx2.Response) -> None:
        self.log.append((request.url.path, response.status_code))
        if request.url.path.endswith("/transaction") and self.lose_answer:
            self.lose_answer -= 1
            raise httpx2.ReadError("connection reset after CMC answered (injected)", request=request)

    def paths(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path, _ in self.log]

    def statuses(self, suffix: str) -> list[int]:
        return [status for path, status in self.log if path.endswith(suffix)]


class AsyncTap(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        delay = self.faults.before(request)
        if delay:
            await asyncio.sleep(delay)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.faults.after(request, response)
        return response


class SyncTap(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        delay = self.faults.before(request)
        if delay:
            time.sleep(delay)
        response = self.inner.handle_request(request)
        response.read()
        self.faults.after(request, response)
        return response


# --- fixtures ----------------------------------------------------------------------------------------


@dataclass
class InProcess:
    """The real app in this event loop, and a way to make SDK clients that talk to it."""

    app: Any
    settings: Settings
    tmp: Path
    faults: Faults = field(default_factory=Faults)

    @property
    def db(self) -> Path:
        return db_path(self.settings)

    @asynccontextmanager
    async def client(self, name: str = "outbox", **options: Any) -> AsyncIterator[AsyncClient]:
        transport = AsyncTap(httpx2.ASGITransport(app=self.app), self.faults)
        async with (
            httpx2.AsyncClient(transport=transport, timeout=10) as http,
            AsyncClient(
                URL, POS, CLIENT_ID, SECRET, outbox_path=self.tmp / f"{name}.sqlite3", http=http, **options
            ) as cmc,
        ):
            yield cmc


@pytest.fixture
def cmc_app(tmp_path: Path) -> Callable[..., Any]:
    """Start the real app in process with settings overrides (and optionally another registry)."""

    @asynccontextmanager
    async def start(registry: Path | None = None, **overrides: Any) -> AsyncIterator[InProcess]:
        settings = settings_for(tmp_path, **overrides)
        async with in_process(settings, *([registry] if registry else [])) as app:
            yield InProcess(app, settings, tmp_path)

    return start


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ThreadServer]:
    """uvicorn on loopback in a thread, serving the real app on the demo registry."""
    port = free_port()
    live = ThreadServer(settings_for(tmp_path, public_url=f"http://127.0.0.1:{port}"), port)
    prepare(live.settings)
    with live:
        yield live


def socket_client(live: ThreadServer, tmp: Path, faults: Faults | None = None, **options: Any) -> Client:
    http = None
    if faults is not None:
        http = httpx2.Client(transport=SyncTap(httpx2.HTTPTransport(), faults), timeout=10)
    return Client(live.url, POS, CLIENT_ID, SECRET, outbox_path=tmp / "outbox.sqlite3", http=http, **options)


def assert_full_response(result: TenderResult, *, base: str) -> None:
    """Delivered, with every part of the typed answer the demo rules produce for a 15-50 sale at loc5."""
    assert result.status == "delivered", result
    assert result.response is not None
    data = result.response.data
    assert data.posStatus == "Accepted"
    assert data.id
    assert data.profile is not None
    assert data.profile.id
    assert data.profile.firstName == "Ada"
    widget = data.qrCodeWidget
    assert widget is not None
    assert widget.widgetId == 1
    for url in (
        widget.shortLinkUrl,
        widget.qrCodeLinkUrl,
        widget.qrCodeHtmlLinkUrl,
        widget.qrCodePreviewLinkUrl,
    ):
        assert url.startswith(base + "/"), url
    assert result.qr_link == widget.shortLinkUrl
    assert data.cfsTemplate is not None
    assert data.cfsTemplate.accountTemplateId == 7
    assert result.cfs_carousel_url
    assert result.cfs_carousel_url.startswith(base + "/")
    assert data.notificationMessageId
    assert {e.rule for e in data.effects} == {QR_RULE}
    assert {e.kind for e in data.effects} == {"qrWidget", "cfsTemplate", "notify"}
    assert data.notificationMessageId in {e.messageId for e in data.effects}


# --- delivered -----------------------------------------------------------------------------------------


async def test_delivered_in_process_with_the_full_typed_response(cmc_app: Callable[..., Any]) -> None:
    async with cmc_app() as cmc, cmc.client() as client:
        settings = await client.settings()
        assert settings.companySettings.isTransactionsEnabled

        result = await client.post_tender(tender("IP-1"))
        assert_full_response(result, base=URL)
        again = await client.post_tender(tender("IP-1"))  # from the outbox: nothing sent
        assert again.response == result.response
        assert cmc.faults.paths().count("transaction") == 1
        small = await client.post_tender(tender("IP-2", amount="4.20"))  # below 15: no rule fires
        assert small.status == "delivered"
        assert small.qr_link is None
        assert small.response
        assert small.response.data.profile is not None

    assert transaction_counts(cmc.db) == {"IP-1": 1, "IP-2": 1}
    assert rule_firings(cmc.db) == {QR_RULE: 1}


def test_delivered_over_a_socket_sync_and_async(server: ThreadServer, tmp_path: Path) -> None:
    with socket_client(server, tmp_path) as client:
        result = client.post_tender(tender("SOCK-1"))
    assert_full_response(result, base=server.url)
    assert result.qr_link
    scan = httpx2.get(result.qr_link, follow_redirects=False)
    assert scan.is_redirect
    assert scan.headers["location"].startswith("https://example.com/coupon")

    async def post_async() -> TenderResult:
        async with AsyncClient(
            server.url, POS, CLIENT_ID, SECRET, outbox_path=tmp_path / "async.sqlite3"
        ) as aclient:
            return await aclient.post_tender(tender("SOCK-2"))

    assert_full_response(asyncio.run(post_async()), base=server.url)
    assert transaction_counts(db_path(server.settings)) == {"SOCK-1": 1, "SOCK-2": 1}


# --- CMC down, then back -------------------------------------------------------------------------------


def test_queued_while_the_server_is_stopped_then_delivered_once(server: ThreadServer, tmp_path: Path) -> None:
    with socket_client(server, tmp_path, poll_interval=0.1) as client:
        assert client.post_tender(tender("DOWN-0")).status == "delivered"
        server.stop()
        started = time.monotonic()
        results = [client.post_tender(tender(f"DOWN-{n}"), deadline=2.0) for n in range(1, 6)]
        assert [r.status for r in results] == ["queued"] * 5
        assert time.monotonic() - started < 2.0
        assert client.status().queued == 5
        assert client.drain().error  # still down: the drain says why and keeps them
        assert client.status().queued == 5

        server.start()  # same port, same database
        client.start()  # the background drainer delivers them
        deadline = time.monotonic() + 10
        while client.status().queued and time.monotonic() < deadline:
            time.sleep(0.05)
        status = client.status()
        assert (status.queued, status.delivered) == (0, 6)
        assert client.drain().delivered == 0
        assert client.post_tender(tender("DOWN-3")).status == "delivered"  # answered from the outbox

    assert transaction_counts(db_path(server.settings)) == {f"DOWN-{n}": 1 for n in range(6)}


async def test_answer_lost_after_commit_is_resent_and_counted_once(cmc_app: Callable[..., Any]) -> None:
    async with cmc_app() as cmc, cmc.client() as client:
        cmc.faults.lose_answer = 1
        first = await client.post_tender(tender("LOST-1"))
        assert first.status == "queued"
        assert "ReadError" in (first.reason or "")
        assert transaction_counts(cmc.db) == {"LOST-1": 1}  # CMC did commit it

        report = await client.drain()
        assert (report.delivered, report.remaining) == (1, 0)
        (entry,) = await client.entries("delivered")
        replayed = msgspec.json.decode(entry.response or b"", type=dict[str, Any])

    sent, resent = cmc.faults.bodies
    assert sent == resent  # the same session and bytes: a replay, not a new sale
    assert cmc.faults.statuses("/transaction") == [200, 200]
    assert transaction_counts(cmc.db) == {"LOST-1": 1}
    assert rule_firings(cmc.db) == {QR_RULE: 1}  # marketing ran once
    assert replayed["data"]["qrCodeWidget"]["shortLinkUrl"].startswith(URL)


def test_answer_lost_over_a_socket_is_counted_once(server: ThreadServer, tmp_path: Path) -> None:
    faults = Faults(lose_answer=1)
    with socket_client(server, tmp_path, faults) as client:
        assert client.post_tender(tender("LOST-S")).status == "queued"
        assert client.drain().delivered == 1
        (_entry,) = client.entries("delivered")
    assert transaction_counts(db_path(server.settings)) == {"LOST-S": 1}
    assert faults.bodies[0] == faults.bodies[1]


# --- refusals ------------------------------------------------------------------------------------------


async def test_409_and_400_are_rejected_and_stay_rejected(cmc_app: Callable[..., Any]) -> None:
    async with cmc_app() as cmc:
        async with cmc.client("till-a") as till_a:
            assert (await till_a.post_tender(tender("DUP-1"))).status == "delivered"
        async with cmc.client("till-b") as till_b:
            # Another till reuses the transactionId for a different sale: CMC answers 409.
            conflict = await till_b.post_tender(tender("DUP-1", amount="31.00"))
            assert conflict.status == "rejected"
            assert conflict.problem is not None
            assert conflict.problem.status == 409
            # An amount CMC refuses (the SDK cannot know its bounds): 400 with the field named.
            invalid = await till_b.post_tender(tender("BIG-1", amount="1e13"))
            assert invalid.status == "rejected"
            assert invalid.problem is not None
            assert invalid.problem.status == 400
            assert invalid.problem.errors
            assert "transactionAmount" in invalid.problem.errors
            # An unknown terminal: startInteraction refuses it (404), nothing to retry.
            unknown = await till_b.post_tender(tender("TERM-1", terminal="term99"))
            assert unknown.status == "rejected"
            assert unknown.problem is not None
            assert unknown.problem.status == 404

            sent = len(cmc.faults.log)
            report = await till_b.drain()
            assert (report.delivered, report.rejected, report.remaining) == (0, 0, 0)
            assert len(cmc.faults.log) == sent  # nothing retried
            assert (await till_b.status()).rejected == 3
            assert (await till_b.post_tender(tender("BIG-1", amount="1e13"))).status == "rejected"

            await till_b.retry(invalid.outbox_id)  # the operator insists: CMC still refuses it
            report = await till_b.drain()
            assert (report.rejected, report.remaining) == (1, 0)
            assert (await till_b.status()).rejected == 3

    assert transaction_counts(cmc.db) == {"DUP-1": 1}


# --- tokens and sessions -------------------------------------------------------------------------------


async def test_expired_token_is_renewed_before_use(cmc_app: Callable[..., Any]) -> None:
    async with cmc_app(token_ttl=timedelta(seconds=1)) as cmc, cmc.client() as client:
        assert (await client.post_tender(tender("TOK-1"))).status == "delivered"
        await asyncio.sleep(1.1)
        assert (await client.post_tender(tender("TOK-2"))).status == "delivered"
    assert cmc.faults.paths().count("token") >= 2
    assert transaction_counts(cmc.db) == {"TOK-1": 1, "TOK-2": 1}


async def test_token_rejected_with_401_gets_one_reauthentication(cmc_app: Callable[..., Any]) -> None:
    frozen = time.time()  # the client believes its token is fresh; CMC knows it expired
    async with cmc_app(token_ttl=timedelta(seconds=1)) as cmc, cmc.client(clock=lambda: frozen) as client:
        assert (await client.post_tender(tender("AUTH-1"))).status == "delivered"
        await asyncio.sleep(1.1)
        cmc.faults.log.clear()
        result = await client.post_tender(tender("AUTH-2"))
    assert result.status == "delivered", result
    assert cmc.faults.log[:3] == [
        ("/pos/pax/startInteraction", 401),
        ("/connect/token", 200),
        ("/pos/pax/startInteraction", 200),
    ]
    assert cmc.faults.log[-1] == ("/pos/pax/transaction", 200)
    assert transaction_counts(cmc.db) == {"AUTH-1": 1, "AUTH-2": 1}


async def test_session_expiring_mid_flight_gets_a_fresh_session(cmc_app: Callable[..., Any]) -> None:
    async with cmc_app(session_ttl=timedelta(milliseconds=300)) as cmc, cmc.client() as client:
        cmc.faults.delay = 0.5  # the session expires while the SendTransaction is on its way
        result = await client.post_tender(tender("SESS-1"), deadline=5.0)
        (entry,) = await client.entries("delivered")
    assert result.status == "delivered", result
    assert cmc.faults.statuses("/transaction") == [410, 200]
    assert cmc.faults.paths().count("startInteraction") == 2
    first, second = (msgspec.json.decode(b, type=dict[str, Any]) for b in cmc.faults.bodies)
    assert first["sessionId"] != second["sessionId"] == entry.session_id
    assert {**first, "sessionId": ""} == {**second, "sessionId": ""}  # same transactionId, same sale
    assert transaction_counts(cmc.db) == {"SESS-1": 1}


async def test_queued_tender_whose_session_expired_is_drained_with_a_new_one(
    cmc_app: Callable[..., Any],
) -> None:
    async with cmc_app(session_ttl=timedelta(milliseconds=300)) as cmc, cmc.client() as client:
        cmc.faults.refuse = 1
        assert (await client.post_tender(tender("SESS-2"))).status == "queued"
        (entry,) = await client.entries("queued")
        assert entry.session_id  # kept so a replay would be identical
        await asyncio.sleep(0.4)
        assert (await client.drain()).delivered == 1
    assert cmc.faults.statuses("/transaction") == [0, 410, 200]
    assert transaction_counts(cmc.db) == {"SESS-2": 1}


# --- settings ------------------------------------------------------------------------------------------


async def test_transactions_disabled_in_settings_are_not_sent(
    cmc_app: Callable[..., Any], tmp_path: Path
) -> None:
    disabled = registry_file(tmp_path, isTransactionsEnabled=False)
    async with cmc_app(disabled) as cmc, cmc.client() as client:
        assert not (await client.settings()).companySettings.isTransactionsEnabled
        result = await client.post_tender(tender("OFF-1"))
        assert result.status == "disabled"
        assert result.reason
        assert "isTransactionsEnabled" in result.reason
        assert (await client.status()).disabled == 1
        assert (await client.drain()).remaining == 0
    assert "startInteraction" not in cmc.faults.paths()
    assert transaction_counts(cmc.db) == {}


# --- a server that hangs -------------------------------------------------------------------------------


class Hanging:
    """A loopback socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def hanging() -> Iterator[Hanging]:
    server = Hanging()
    yield server
    server.close()


def test_deadline_is_respected_when_the_server_hangs(hanging: Hanging, tmp_path: Path) -> None:
    client = Client(
        hanging.url, POS, CLIENT_ID, SECRET, outbox_path=tmp_path / "o.sqlite3", request_timeout=5
    )
    try:
        started = time.monotonic()
        result = client.post_tender(tender("HANG-0"), deadline=0.3)
        elapsed = time.monotonic() - started
        assert result.status == "queued", result
        assert 0.3 <= elapsed < 0.4, f"{elapsed:.3f} s for a 0.3 s deadline"
        # That attempt is still waiting on CMC: the next sales are only stored, the till does not wait.
        for n in range(1, 4):
            started = time.monotonic()
            assert client.post_tender(tender(f"HANG-{n}"), deadline=0.3).status == "queued"
            assert time.monotonic() - started < 0.1
        assert client.status().queued == 4
    finally:
        hanging.close()  # the attempt in flight fails now; close() waits for it to record that
        client.close(grace=5)


async def test_async_deadline_is_respected_when_the_server_hangs(hanging: Hanging, tmp_path: Path) -> None:
    client = AsyncClient(
        hanging.url, POS, CLIENT_ID, SECRET, outbox_path=tmp_path / "o.sqlite3", request_timeout=5
    )
    try:
        for n, limit in enumerate((0.4, 0.1, 0.1)):
            started = time.monotonic()
            result = await client.post_tender(tender(f"AHANG-{n}", amount=str(Decimal(20 + n))), deadline=0.3)
            assert result.status == "queued", result
            assert time.monotonic() - started < limit
        assert (await client.status()).queued == 3
    finally:
        hanging.close()
        await client.close(grace=5)
