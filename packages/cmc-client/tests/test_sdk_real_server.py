"""The SDK against the REAL CMC service (uvicorn on loopback), every test once per driver.

Every check of "exactly once" reads the server's own SQLite file (its ``transactions`` table). Faults
are injected around the real app, never instead of it: a transport that forwards the request and then
drops the answer, one that refuses a request, one that moves CMC's clock on while a request is on its
way, a stopped uvicorn, and a socket that accepts and never answers. CMC and the SDK share one
:class:`ManualClock`: tokens and sessions expire because the test moves time on, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import pytest
from real_cmc import (
    ManualClock,
    ThreadServer,
    db_path,
    free_port,
    prepare,
    registry_file,
    rule_firings,
    settings_for,
    tender,
    transaction_counts,
)
from sdk_drivers import Drivers, Pos

from cmc_client import TenderResult
from cmc_client._cli import main as cmc_pos

QR_RULE = "mid-basket coupon"


# --- fault injection around the real app --------------------------------------------------------------


@dataclass
class Faults:
    """What the tap does to ``/transaction`` requests (each counter is used up once per request)."""

    lose_answer: int = 0
    """Forward the request (the server commits), then raise a network error instead of answering."""
    refuse: int = 0
    """Raise a connection error before the request reaches the server."""
    on_the_way: list[Callable[[], None]] = field(default_factory=list)
    """Run one of these (e.g. move CMC's clock on) after a request was sent, before CMC reads it."""
    log: list[tuple[str, int]] = field(default_factory=list)
    """(path, status) of every answer the server gave; status 0 when the tap refused the request."""
    bodies: list[bytes] = field(default_factory=list)
    """SendTransaction bodies as sent."""

    def sync_transport(self) -> httpx2.BaseTransport:
        return SyncTap(httpx2.HTTPTransport(), self)

    def async_transport(self) -> httpx2.AsyncBaseTransport:
        return AsyncTap(httpx2.AsyncHTTPTransport(), self)

    def before(self, request: httpx2.Request) -> None:
        if not request.url.path.endswith("/transaction"):
            return
        self.bodies.append(request.content)
        if self.refuse:
            self.refuse -= 1
            self.log.append((request.url.path, 0))
            raise httpx2.ConnectError("connection refused (injected)", request=request)
        if self.on_the_way:
            self.on_the_way.pop(0)()

    def after(self, request: httpx2.Request, response: httpx2.Response) -> None:
        self.log.append((request.url.path, response.status_code))
        if request.url.path.endswith("/transaction") and self.lose_answer:
            self.lose_answer -= 1
            raise httpx2.ReadError("connection reset after CMC answered (injected)", request=request)

    def paths(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for path, _ in self.log]

    def statuses(self, suffix: str) -> list[int]:
        return [status for path, status in self.log if path.endswith(suffix)]


class SyncTap(httpx2.BaseTransport):
    def __init__(self, inner: httpx2.BaseTransport, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        self.faults.before(request)
        response = self.inner.handle_request(request)
        response.read()
        self.faults.after(request, response)
        return response


class AsyncTap(httpx2.AsyncBaseTransport):
    def __init__(self, inner: httpx2.AsyncBaseTransport, faults: Faults) -> None:
        self.inner, self.faults = inner, faults

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        self.faults.before(request)
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.faults.after(request, response)
        return response


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def cmc_clock() -> ManualClock:
    # A day back: CMC checks a token's "iat" against the wall clock (PyJWT's own check), so a token
    # issued on a clock moved past real time would be refused. Tests move this clock by hours at most.
    return ManualClock(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1))


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def serve(tmp_path: Path, cmc_clock: ManualClock) -> Iterator[Callable[..., ThreadServer]]:
    """Start the real app on loopback (optionally on another registry file, with settings overrides)."""
    started: list[ThreadServer] = []

    def start(registry: Path | None = None, **overrides: Any) -> ThreadServer:
        port = free_port()
        settings = settings_for(tmp_path, public_url=f"http://127.0.0.1:{port}", **overrides)
        live = ThreadServer(settings, port, clock=cmc_clock)
        prepare(live.settings, *([registry] if registry else []))
        started.append(live)
        return live.start()

    yield start
    for live in started:
        live.stop()


@pytest.fixture
def server(serve: Callable[..., ThreadServer]) -> ThreadServer:
    return serve()


@pytest.fixture
def pos_for(drivers: Drivers, tmp_path: Path, cmc_clock: ManualClock, faults: Faults) -> Callable[..., Pos]:
    """A POS client of the test's driver for a live server, through the fault tap, on the shared clock."""

    def make(live: ThreadServer, name: str = "outbox", **options: Any) -> Pos:
        options.setdefault("clock", cmc_clock.seconds)
        return drivers.pos(live.url, tmp_path / f"{name}.sqlite3", faults, **options)

    return make


@pytest.fixture
def pos(pos_for: Callable[..., Pos], server: ThreadServer) -> Pos:
    return pos_for(server)


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


def test_delivered_with_the_full_typed_response(pos: Pos, server: ThreadServer, faults: Faults) -> None:
    assert pos.settings().companySettings.isTransactionsEnabled

    result = pos.post_tender(tender("IP-1"))
    assert_full_response(result, base=server.url)
    assert result.qr_link
    scan = httpx2.get(result.qr_link, follow_redirects=False)
    assert scan.is_redirect
    assert scan.headers["location"].startswith("https://example.com/coupon")

    again = pos.post_tender(tender("IP-1"))  # from the outbox: nothing sent
    assert again.response == result.response
    assert faults.paths().count("transaction") == 1
    small = pos.post_tender(tender("IP-2", amount="4.20"))  # below 15: no rule fires
    assert small.status == "delivered"
    assert small.qr_link is None
    assert small.response
    assert small.response.data.profile is not None

    assert transaction_counts(db_path(server.settings)) == {"IP-1": 1, "IP-2": 1}
    assert rule_firings(db_path(server.settings)) == {QR_RULE: 1}


# --- CMC down, then back -------------------------------------------------------------------------------


def test_queued_while_the_server_is_stopped_then_delivered_once(
    pos_for: Callable[..., Pos], server: ThreadServer
) -> None:
    pos = pos_for(server, poll_interval=0.05)
    assert pos.post_tender(tender("DOWN-0")).status == "delivered"
    server.stop()
    started = time.monotonic()
    results = [pos.post_tender(tender(f"DOWN-{n}"), deadline=2.0) for n in range(1, 6)]
    assert [r.status for r in results] == ["queued"] * 5
    assert time.monotonic() - started < 5.0  # generous; the circuit makes all but the first a local write
    assert pos.status().queued == 5
    assert pos.drain().error  # still down: the drain says why and keeps them
    assert pos.status().queued == 5

    server.start()  # same port, same database
    pos.start()  # the background drainer delivers them
    assert pos.until(lambda: pos.status().queued == 0)
    status = pos.status()
    assert (status.queued, status.delivered) == (0, 6)
    assert pos.drain().delivered == 0
    assert pos.post_tender(tender("DOWN-3")).status == "delivered"  # answered from the outbox

    assert transaction_counts(db_path(server.settings)) == {f"DOWN-{n}": 1 for n in range(6)}


def test_answer_lost_after_commit_is_resent_and_counted_once(
    pos: Pos, server: ThreadServer, faults: Faults
) -> None:
    faults.lose_answer = 1
    first = pos.post_tender(tender("LOST-1"))
    assert first.status == "queued"
    assert "ReadError" in (first.reason or "")
    assert transaction_counts(db_path(server.settings)) == {"LOST-1": 1}  # CMC did commit it

    report = pos.drain()
    assert (report.delivered, report.remaining) == (1, 0)
    (entry,) = pos.entries("delivered")
    replayed = msgspec.json.decode(entry.response or b"", type=dict[str, Any])

    sent, resent = faults.bodies
    assert sent == resent  # the same session and bytes: a replay, not a new sale
    assert faults.statuses("/transaction") == [200, 200]
    assert transaction_counts(db_path(server.settings)) == {"LOST-1": 1}
    assert rule_firings(db_path(server.settings)) == {QR_RULE: 1}  # marketing ran once
    assert replayed["data"]["qrCodeWidget"]["shortLinkUrl"].startswith(server.url)


# --- refusals ------------------------------------------------------------------------------------------


def test_409_400_and_an_unknown_terminal_are_rejected_and_stay_rejected(
    pos_for: Callable[..., Pos], server: ThreadServer, faults: Faults
) -> None:
    till_a, till_b = pos_for(server, "till-a"), pos_for(server, "till-b")
    assert till_a.post_tender(tender("DUP-1")).status == "delivered"
    # Another till reuses the transactionId for a different sale: CMC answers 409.
    conflict = till_b.post_tender(tender("DUP-1", amount="31.00"))
    assert conflict.status == "rejected"
    assert conflict.problem is not None
    assert conflict.problem.status == 409
    # An amount CMC refuses (the SDK cannot know its bounds): 400 with the field named.
    invalid = till_b.post_tender(tender("BIG-1", amount="1e13"))
    assert invalid.status == "rejected"
    assert invalid.problem is not None
    assert invalid.problem.status == 400
    assert invalid.problem.errors
    assert "transactionAmount" in invalid.problem.errors
    # An unknown terminal: startInteraction refuses it (404), nothing to retry.
    unknown = till_b.post_tender(tender("TERM-1", terminal="term99"))
    assert unknown.status == "rejected"
    assert unknown.problem is not None
    assert unknown.problem.status == 404

    sent = len(faults.log)
    report = till_b.drain()
    assert (report.delivered, report.rejected, report.remaining) == (0, 0, 0)
    assert len(faults.log) == sent  # nothing retried
    assert till_b.status().rejected == 3
    assert till_b.post_tender(tender("BIG-1", amount="1e13")).status == "rejected"

    till_b.retry(invalid.outbox_id)  # the operator insists: CMC still refuses it
    report = till_b.drain()
    assert (report.rejected, report.remaining) == (1, 0)
    assert till_b.status().rejected == 3

    assert transaction_counts(db_path(server.settings)) == {"DUP-1": 1}


# --- tokens and sessions -------------------------------------------------------------------------------


def test_a_token_is_renewed_before_it_expires(
    pos: Pos, server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    assert pos.post_tender(tender("TOK-1")).status == "delivered"
    cmc_clock.advance(minutes=56)  # CMC's token lives an hour; the SDK renews it 5 minutes ahead
    assert pos.post_tender(tender("TOK-2")).status == "delivered"

    assert faults.paths().count("token") == 2
    assert 401 not in [status for _, status in faults.log]
    assert transaction_counts(db_path(server.settings)) == {"TOK-1": 1, "TOK-2": 1}


def test_a_token_cmc_no_longer_accepts_gets_one_reauthentication(
    pos_for: Callable[..., Pos], server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    frozen = cmc_clock.seconds()  # the SDK believes its token is fresh; CMC knows it expired
    pos = pos_for(server, clock=lambda: frozen)
    assert pos.post_tender(tender("AUTH-1")).status == "delivered"
    cmc_clock.advance(hours=2)
    faults.log.clear()

    result = pos.post_tender(tender("AUTH-2"))
    assert result.status == "delivered", result
    assert faults.log[:3] == [
        ("/pos/pax/startInteraction", 401),
        ("/connect/token", 200),
        ("/pos/pax/startInteraction", 200),
    ]
    assert faults.log[-1] == ("/pos/pax/transaction", 200)
    assert transaction_counts(db_path(server.settings)) == {"AUTH-1": 1, "AUTH-2": 1}


def test_a_session_expiring_mid_flight_gets_a_fresh_session(
    pos: Pos, server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    # The session (15 minutes) expires while the SendTransaction is on its way.
    faults.on_the_way = [lambda: cmc_clock.advance(minutes=16)]
    result = pos.post_tender(tender("SESS-1"), deadline=5.0)
    (entry,) = pos.entries("delivered")

    assert result.status == "delivered", result
    assert faults.statuses("/transaction") == [410, 200]
    assert faults.paths().count("startInteraction") == 2
    first, second = (msgspec.json.decode(b, type=dict[str, Any]) for b in faults.bodies)
    assert first["sessionId"] != second["sessionId"] == entry.session_id
    assert {**first, "sessionId": ""} == {**second, "sessionId": ""}  # same transactionId, same sale
    assert transaction_counts(db_path(server.settings)) == {"SESS-1": 1}


def test_a_queued_tender_whose_session_expired_is_drained_with_a_new_one(
    pos: Pos, server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    faults.refuse = 1
    assert pos.post_tender(tender("SESS-2")).status == "queued"
    (entry,) = pos.entries("queued")
    assert entry.session_id  # kept so a replay would be identical
    cmc_clock.advance(minutes=20)

    assert pos.drain().delivered == 1
    assert faults.statuses("/transaction") == [0, 410, 200]
    assert transaction_counts(db_path(server.settings)) == {"SESS-2": 1}


# --- settings ------------------------------------------------------------------------------------------


def test_transactions_disabled_in_settings_are_not_sent(
    pos_for: Callable[..., Pos], serve: Callable[..., ThreadServer], faults: Faults, tmp_path: Path
) -> None:
    live = serve(registry_file(tmp_path, isTransactionsEnabled=False))
    pos = pos_for(live)
    assert not pos.settings().companySettings.isTransactionsEnabled
    result = pos.post_tender(tender("OFF-1"))
    assert result.status == "disabled"
    assert "isTransactionsEnabled" in (result.reason or "")
    assert pos.status().disabled == 1
    assert pos.drain().remaining == 0
    assert "startInteraction" not in faults.paths()
    assert transaction_counts(db_path(live.settings)) == {}


# --- the date of the sale ----------------------------------------------------------------------------


def occurred_at(path: Path, tx_id: str) -> dt.datetime:
    """When CMC says the sale happened (its ``transactions.occurred_at``, UTC)."""
    with sqlite3.connect(path) as db:
        (text,) = db.execute(
            "SELECT occurred_at FROM transactions WHERE pos_transaction_id = ?", (tx_id,)
        ).fetchone()
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.usefixtures("pacific")
def test_a_sale_queued_while_cmc_is_down_is_stored_at_its_post_time(
    pos: Pos, server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    sold_at = cmc_clock.now
    faults.refuse = 1
    assert pos.post_tender(tender("LATE-1")).status == "queued"
    cmc_clock.advance(hours=3)  # CMC is reached three hours later

    assert pos.drain().delivered == 1
    assert occurred_at(db_path(server.settings), "LATE-1") == sold_at  # not the drain time
    stamped = msgspec.json.decode(faults.bodies[-1], type=dict[str, Any])["transactionDate"]
    assert dt.datetime.fromisoformat(stamped) == sold_at
    assert stamped.endswith(("-08:00", "-07:00"))  # the till's local time, with its offset


# --- reconciliation ----------------------------------------------------------------------------------


def test_verify_confirms_what_cmc_holds_and_names_what_it_does_not(
    pos: Pos, server: ThreadServer, faults: Faults, cmc_clock: ManualClock
) -> None:
    assert pos.post_tender(tender("REC-1")).status == "delivered"
    assert (
        pos.post_tender(msgspec.structs.replace(tender("REC-2"), posCompanyId="comp5")).status == "delivered"
    )
    faults.lose_answer = 1
    assert pos.post_tender(tender("REC-3")).status == "queued"
    assert pos.drain().delivered == 1  # delivered by a replay
    assert pos.verify().ok

    # A POS that believes CMC has a sale it never got, and a stored answer that is not CMC's.
    faults.refuse = 1
    never = pos.post_tender(tender("REC-4"))
    outbox = pos.client.outbox
    outbox.mark_delivered(never.outbox_id, b'{"data":{}}', now=cmc_clock.seconds())
    (first,) = [e for e in pos.entries("delivered") if e.transaction_id == "REC-1"]
    outbox.mark_delivered(first.id, (first.response or b"").replace(b"Ada", b"Bob"), now=cmc_clock.seconds())

    report = pos.verify()
    assert (report.checked, report.confirmed) == (4, 2)
    assert [(d.entry.transaction_id, d.kind) for d in report.discrepancies] == [
        ("REC-1", "different"),
        ("REC-4", "missing"),
    ]
    assert "404" in report.discrepancies[1].detail


def test_cmc_pos_outbox_verify_exits_nonzero_when_cmc_lacks_a_delivered_tender(
    server: ThreadServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outbox = str(tmp_path / "cli.sqlite3")

    def cli(*argv: str) -> int:
        return cmc_pos(["--url", server.url, "--outbox", outbox, *argv])  # the demo's credentials

    tx = tmp_path / "tx.json"
    tx.write_text(msgspec.json.encode(tender("CLI-1")).decode())
    assert cli("send", str(tx)) == 0
    assert cli("outbox", "verify") == 0
    assert "1 of 1 delivered tenders confirmed by CMC" in capsys.readouterr().out

    with sqlite3.connect(outbox) as db:  # the outbox claims a sale CMC never received
        db.execute("UPDATE tender SET transaction_id = 'CLI-404'")
    assert cli("outbox", "verify") == 3
    out = capsys.readouterr().out
    assert "missing" in out
    assert "CLI-404" in out


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


def test_deadline_is_respected_when_the_server_hangs(
    drivers: Drivers, hanging: Hanging, tmp_path: Path
) -> None:
    pos = drivers.pos(hanging.url, tmp_path / "o.sqlite3", request_timeout=5)
    try:
        started = time.monotonic()
        result = pos.post_tender(tender("HANG-0"), deadline=0.3)
        elapsed = time.monotonic() - started
        assert result.status == "queued", result
        assert 0.3 <= elapsed < 2.0, f"{elapsed:.3f} s for a 0.3 s deadline"
        # That attempt is still waiting on CMC: the next sales are only stored, the till does not wait.
        for n in range(1, 4):
            started = time.monotonic()
            assert pos.post_tender(tender(f"HANG-{n}"), deadline=3.0).status == "queued"
            assert time.monotonic() - started < 2.0  # well below its deadline: it did not wait on CMC
        assert pos.status().queued == 4
    finally:
        hanging.close()  # the attempt in flight fails now; close() waits for it to record that
        pos.close(grace=5)
