"""Delivery against a fake CMC, every test once per driver (``Client`` and ``AsyncClient``).

Delivered, queued (network, 5xx, 429 and its Retry-After), rejected, replays, sessions, tokens,
settings, posStatus, the deadline and the circuit, draining, the date stamped on a sale, status,
verification and what close() does to deliveries still in flight. Time passes only by the clock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from sdk_drivers import Pos
from sdk_fake_cmc import Clock, FakeCmc

from cmc_client import (
    Customer,
    DuplicateTransactionError,
    InvalidTenderError,
    Outbox,
    Product,
    Tender,
    wire,
)


def tender(tx_id: str = "T-1", **fields: object) -> Tender:
    sale = Tender(
        transactionId=tx_id,
        terminalId="term5",
        posLocationId="loc5",
        transactionType="Sale",
        transactionAmount=Decimal("12.50"),
        customer=Customer(id="C-1", firstName="Ada", contacts=[wire.Contact(email="ada@example.com")]),
        products=[Product(productId="P-1", productName="Latte", quantity=Decimal(2))],
    )
    return msgspec.structs.replace(sale, **fields)


def sent(cmc: FakeCmc) -> list[wire.TransactionRequest]:
    return [msgspec.json.decode(b, type=wire.TransactionRequest) for b in cmc.bodies("transaction")]


# --- delivered -----------------------------------------------------------------------------------------


def test_delivered_with_the_full_typed_response(pos: Pos, cmc: FakeCmc) -> None:
    result = pos.post_tender(tender())

    assert result.status == "delivered"
    assert result.response is not None
    data = result.response.data
    assert data.id == "tx-1"
    assert data.qrCodeWidget is not None
    assert data.qrCodeWidget.qrCodeHtmlLinkUrl.endswith("/qr.html")
    assert data.qrCodeWidget.notificationMessageId == "msg-1"
    assert data.profile is not None
    assert data.profile.customerEmail == "ada@example.com"
    assert result.qr_link == "https://cmc.test/s/abc1"
    assert result.cfs_carousel_url == "https://cmc.test/cfs/3"
    assert pos.status().delivered == 1
    (entry,) = pos.entries("delivered")
    assert entry.response == cmc.committed["T-1"][1]  # CMC's answer, byte for byte


def test_amounts_go_out_as_json_numbers_with_the_session(pos: Pos, cmc: FakeCmc) -> None:
    pos.post_tender(tender())

    (body,) = cmc.bodies("transaction")
    assert b'"transactionAmount":12.50' in body
    assert body.startswith(b'{"sessionId":')
    (request,) = sent(cmc)
    assert request.sessionId in cmc.sessions
    assert request.transactionId == "T-1"


def test_several_tills_at_once_each_sale_delivered_once(pos: Pos, cmc: FakeCmc) -> None:
    results = []

    def till(number: int) -> None:
        results.extend(pos.post_tender(tender(f"T-{number}-{n}")) for n in range(5))

    tills = [threading.Thread(target=till, args=(number,)) for number in range(6)]
    for thread in tills:
        thread.start()
    for thread in tills:
        thread.join(60)

    assert [r.status for r in results] == ["delivered"] * 30
    assert len(cmc.committed) == 30
    assert cmc.count("transaction") == 30


# --- queued --------------------------------------------------------------------------------------------


def test_queued_on_network_error_then_delivered_by_drain(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"]

    result = pos.post_tender(tender())
    assert result.status == "queued"
    assert "ConnectError" in (result.reason or "")
    status = pos.status()
    assert status.queued == 1
    assert status.last_error is not None
    assert "ConnectError" in status.last_error

    report = pos.drain()
    assert (report.delivered, report.remaining, report.error) == (1, 0, None)
    assert list(cmc.committed) == ["T-1"]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_queue_the_tender_and_drain_retries_them(pos: Pos, cmc: FakeCmc, status: int) -> None:
    cmc.faults["transaction"] = [status]
    result = pos.post_tender(tender())
    assert result.status == "queued"
    assert f"CMC answered {status}" in (result.reason or "")

    cmc.faults["transaction"] = [429, 502]  # the drain's first two tries fail too; the third succeeds
    assert pos.drain().delivered == 1
    assert cmc.count("transaction") == 4
    assert len(cmc.committed) == 1


def test_a_retry_after_within_the_retry_budget_is_waited_and_retried(
    make_pos: Callable[..., Pos], cmc: FakeCmc
) -> None:
    pos = make_pos(retry_timeout=30.0)
    cmc.retry_after = "20"
    cmc.faults["start"] = ["network"]
    assert pos.post_tender(tender()).status == "queued"
    cmc.faults["transaction"] = [429]

    assert pos.drain().delivered == 1
    assert cmc.count("transaction") == 2


def test_a_retry_after_beyond_the_retry_budget_ends_the_pass(
    make_pos: Callable[..., Pos], cmc: FakeCmc
) -> None:
    pos = make_pos(retry_timeout=30.0)
    cmc.retry_after = "3600"  # CMC asks for an hour: the drain must not hammer it, nor sleep an hour
    cmc.faults["start"] = ["network"]
    assert pos.post_tender(tender()).status == "queued"
    cmc.faults["transaction"] = [429]

    report = pos.drain()
    assert (report.delivered, report.remaining) == (0, 1)
    assert "429" in (report.error or "")
    assert cmc.count("transaction") == 1


def test_an_unreadable_answer_is_transient(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["start"] = [200]  # a 200 whose body is a problem, not a StartInteraction answer

    result = pos.post_tender(tender())
    assert result.status == "queued"
    assert "unreadable" in (result.reason or "")
    assert pos.drain().delivered == 1


def test_drain_stops_when_cmc_stays_down_and_keeps_order(pos: Pos, cmc: FakeCmc, clock: Clock) -> None:
    cmc.faults["token"] = ["network"] * 4  # 1 post (the next 2 skip CMC), then 3 tries of one drain
    for n in range(3):
        assert pos.post_tender(tender(f"T-{n}")).status == "queued"
    assert cmc.count("token") == 1

    report = pos.drain()
    assert (report.delivered, report.remaining) == (0, 3)
    assert "ConnectError" in (report.error or "")
    assert cmc.count("token") == 4  # it stopped at the first tender: the others were not tried

    assert pos.drain().delivered == 3
    assert list(cmc.committed) == ["T-0", "T-1", "T-2"]


def test_drain_limit(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"]
    for n in range(3):
        pos.post_tender(tender(f"T-{n}"))

    report = pos.drain(limit=2)
    assert (report.delivered, report.remaining) == (2, 1)
    assert list(cmc.committed) == ["T-0", "T-1"]


def test_lost_answer_is_resent_identically_and_counted_once(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["lose-answer"]

    assert pos.post_tender(tender()).status == "queued"
    assert list(cmc.committed) == ["T-1"]  # CMC has it; the POS does not know yet

    assert pos.drain().delivered == 1
    first, replay = cmc.bodies("transaction")
    assert first == replay  # the same session and bytes: a replay, not a new sale
    assert cmc.count("start") == 1
    assert len(cmc.committed) == 1
    assert pos.entries("delivered")[0].response == cmc.committed["T-1"][1]


def test_background_drainer_delivers_when_cmc_is_back(make_pos: Callable[..., Pos], cmc: FakeCmc) -> None:
    pos = make_pos(poll_interval=0.02)
    cmc.faults["token"] = ["network"]
    assert pos.post_tender(tender()).status == "queued"

    pos.start()
    assert pos.until(lambda: pos.status().delivered == 1)
    assert pos.status().queued == 0


# --- rejected and not sent -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 409, 422])
def test_4xx_is_rejected_and_stays_until_retried(pos: Pos, cmc: FakeCmc, status: int) -> None:
    cmc.faults["transaction"] = [status]

    result = pos.post_tender(tender())
    assert result.status == "rejected"
    assert result.problem is not None
    assert result.problem.status == status
    assert result.reason == f"fault {status}"

    assert pos.drain().delivered == 0
    assert pos.status().rejected == 1
    assert cmc.count("transaction") == 1
    again = pos.post_tender(tender())  # from the outbox: nothing sent
    assert (again.status, again.problem) == ("rejected", result.problem)
    assert cmc.count("transaction") == 1

    pos.retry(result.outbox_id)
    assert pos.status().queued == 1
    assert pos.drain().delivered == 1


def test_retry_of_a_tender_that_is_not_rejected_is_a_key_error(pos: Pos) -> None:
    result = pos.post_tender(tender())
    with pytest.raises(KeyError):
        pos.retry(result.outbox_id)
    with pytest.raises(KeyError):
        pos.retry(999)


def test_settings_with_transactions_disabled_send_nothing(pos: Pos, cmc: FakeCmc) -> None:
    cmc.transactions_enabled = False

    result = pos.post_tender(tender())
    assert result.status == "disabled"
    assert "isTransactionsEnabled" in (result.reason or "")
    assert cmc.count("start") == cmc.count("transaction") == 0
    assert pos.status().disabled == 1
    assert pos.settings().companySettings.isTransactionsEnabled is False
    assert pos.drain().remaining == 0

    cmc.transactions_enabled = True  # the operator turned them on again
    pos.settings(refresh=True)
    pos.retry(result.outbox_id)
    assert pos.drain().delivered == 1


def test_settings_are_cached_for_their_ttl(make_pos: Callable[..., Pos], cmc: FakeCmc, clock: Clock) -> None:
    pos = make_pos(settings_ttl=900.0)
    pos.post_tender(tender("T-1"))
    clock.advance(899)
    pos.post_tender(tender("T-2"))
    assert cmc.count("settings") == 1

    clock.advance(2)
    pos.post_tender(tender("T-3"))
    assert cmc.count("settings") == 2
    pos.settings(refresh=True)
    assert cmc.count("settings") == 3


def test_a_server_without_the_settings_lookup_counts_as_enabled(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["settings"] = [404]
    assert pos.post_tender(tender()).status == "delivered"


def test_pos_status_not_accepted_is_reported_not_retried(pos: Pos, cmc: FakeCmc) -> None:
    cmc.pos_status = "Disabled"

    result = pos.post_tender(tender())
    assert result.status == "not-accepted"
    assert "Disabled" in (result.reason or "")
    report = pos.drain()
    assert (report.delivered, report.skipped, report.remaining) == (0, 0, 0)
    assert pos.status().not_accepted == 1
    assert cmc.count("start") == 1

    cmc.pos_status = "Accepted"
    pos.retry(result.outbox_id)
    assert pos.drain().delivered == 1


def test_drain_counts_tenders_it_could_not_send(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"]
    pos.post_tender(tender())
    cmc.pos_status = "NotAvailable"

    report = pos.drain()
    assert (report.delivered, report.skipped, report.remaining) == (0, 1, 0)


# --- sessions and tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["session-expired", "session-unknown"])
def test_session_lost_mid_flight_gets_a_fresh_one_with_the_same_transaction(
    pos: Pos, cmc: FakeCmc, fault: str
) -> None:
    cmc.faults["transaction"] = [fault]

    result = pos.post_tender(tender())
    assert result.status == "delivered"
    first, second = sent(cmc)
    assert first.transactionId == second.transactionId == "T-1"
    assert first.sessionId != second.sessionId
    assert msgspec.structs.replace(first, sessionId="") == msgspec.structs.replace(second, sessionId="")
    assert cmc.count("start") == 2
    assert list(cmc.committed) == ["T-1"]
    assert pos.entry(result.outbox_id).session_id == second.sessionId


def test_a_fresh_session_refused_too_is_transient(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["session-expired", "session-expired"]

    result = pos.post_tender(tender())
    assert result.status == "queued"
    assert "fresh session" in (result.reason or "")


def test_the_session_is_stored_before_it_is_used(pos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["network"]

    result = pos.post_tender(tender())
    assert result.status == "queued"
    stored = pos.entry(result.outbox_id).session_id
    assert stored in cmc.sessions
    pos.drain()
    assert [r.sessionId for r in sent(cmc)] == [stored, stored]
    assert cmc.count("start") == 1


def test_token_is_cached_then_renewed_five_minutes_before_expiry(
    pos: Pos, cmc: FakeCmc, clock: Clock
) -> None:
    pos.post_tender(tender("T-1"))
    clock.advance(3600 - 301)
    pos.post_tender(tender("T-2"))
    assert cmc.tokens_issued == 1

    clock.advance(2)
    pos.post_tender(tender("T-3"))
    assert cmc.tokens_issued == 2
    assert len(cmc.committed) == 3


def test_401_reauthenticates_once(pos: Pos, cmc: FakeCmc) -> None:
    pos.post_tender(tender("T-1"))
    cmc.valid_tokens.clear()  # CMC restarted with a new signing key

    assert pos.post_tender(tender("T-2")).status == "delivered"
    assert cmc.tokens_issued == 2


@pytest.mark.parametrize(
    ("endpoint", "refusal"),
    [("token", 400), ("start", 401)],  # the token refused, or 401 even with a fresh token
)
def test_refused_credentials_keep_the_tender_queued(
    pos: Pos, cmc: FakeCmc, endpoint: str, refusal: int
) -> None:
    cmc.faults[endpoint] = [refusal] * 4

    result = pos.post_tender(tender())
    assert result.status == "queued"
    assert "AuthenticationError" in (result.reason or "")
    calls = cmc.count(endpoint)
    report = pos.drain()  # credentials are not retried with backoff: the pass stops after one try
    assert "AuthenticationError" in (report.error or "")
    assert cmc.count(endpoint) == 2 * calls
    assert pos.status().queued == 1


# --- the deadline and the circuit ------------------------------------------------------------------------


def test_deadline_is_respected_when_cmc_hangs_and_the_next_sales_do_not_wait(
    pos: Pos, cmc: FakeCmc, clock: Clock
) -> None:
    cmc.faults["transaction"] = ["hang"]

    started = time.monotonic()
    first = pos.post_tender(tender("T-1"), deadline=0.2)
    assert time.monotonic() - started < 2.0  # generous: the machine is shared
    assert first.status == "queued"
    assert "no answer within 0.2 s" in (first.reason or "")

    # That attempt still waits on CMC: the next sale is only stored, CMC is not even asked.
    tokens = cmc.count("token")
    second = pos.post_tender(tender("T-2"), deadline=5.0)
    assert second.status == "queued"
    assert "unreachable" in (second.reason or "")
    assert cmc.count("token") == tokens

    cmc.release.set()  # CMC fails the hung request; the attempt records it and trips the circuit
    # The attempt has ended once its row is released *and* the client lets go of it (that unstalls
    # the circuit a moment after the row's write): on a loaded machine the moment can be seen.
    assert pos.until(lambda: pos.entry(first.outbox_id).attempts == 1 and not pos.client._inflight)
    assert "ReadTimeout" in (pos.entry(first.outbox_id).last_error or "")
    clock.advance(1.5)  # past the offline window: the till tries CMC again
    assert pos.post_tender(tender("T-3")).status == "delivered"
    assert pos.drain().delivered == 2


def test_after_a_network_error_the_till_skips_cmc_for_the_offline_window(
    make_pos: Callable[..., Pos], cmc: FakeCmc, clock: Clock
) -> None:
    pos = make_pos(offline_window=10.0)
    cmc.faults["token"] = ["network"]
    assert pos.post_tender(tender("T-1")).status == "queued"

    clock.advance(9)
    assert pos.post_tender(tender("T-2")).status == "queued"
    assert cmc.count("token") == 1

    clock.advance(2)
    assert pos.post_tender(tender("T-3")).status == "delivered"
    assert cmc.count("token") == 2


def test_a_clock_set_back_does_not_hold_the_circuit_open(
    make_pos: Callable[..., Pos], cmc: FakeCmc, clock: Clock
) -> None:
    pos = make_pos(offline_window=10.0)
    cmc.faults["token"] = ["network"]
    pos.post_tender(tender("T-1"))

    clock.advance(-3600)
    assert pos.post_tender(tender("T-2")).status == "delivered"


def test_an_answer_from_cmc_closes_the_circuit(pos: Pos, cmc: FakeCmc, clock: Clock) -> None:
    cmc.faults["token"] = ["network"]
    pos.post_tender(tender("T-1"))
    assert pos.drain().delivered == 1  # the drainer reached CMC

    assert pos.post_tender(tender("T-2")).status == "delivered"


# --- the outbox ------------------------------------------------------------------------------------------


def test_posting_the_same_tender_again_does_not_send_it_twice(pos: Pos, cmc: FakeCmc, clock: Clock) -> None:
    first = pos.post_tender(tender())
    clock.advance(60)  # posted again a minute later, still without a date: the same sale
    again = pos.post_tender(tender())

    assert again.status == "delivered"
    assert again.outbox_id == first.outbox_id
    assert again.response == first.response
    assert cmc.count("transaction") == 1


def test_same_transaction_id_with_another_body_is_refused_locally(pos: Pos) -> None:
    pos.post_tender(tender())
    with pytest.raises(DuplicateTransactionError):
        pos.post_tender(tender(transactionAmount=Decimal("99.00")))
    with pytest.raises(DuplicateTransactionError):
        pos.post_tender(tender(transactionDate=None, terminalId="term6"))


def test_the_same_transaction_id_in_another_company_is_another_sale(pos: Pos, cmc: FakeCmc) -> None:
    a = pos.post_tender(tender(posCompanyId="comp5"))
    b = pos.post_tender(tender(posCompanyId="comp6", transactionAmount=Decimal("3")))
    assert a.outbox_id != b.outbox_id


def test_an_invalid_tender_raises_and_stores_nothing(pos: Pos) -> None:
    with pytest.raises(InvalidTenderError):
        pos.post_tender({"transactionId": "", "terminalId": "T", "posLocationId": "L"})
    with pytest.raises(InvalidTenderError):
        pos.post_tender({"transactionId": "T-1", "terminalId": "T"})
    assert pos.status().queued == 0
    assert pos.entries() == []


def test_a_mapping_is_accepted_and_its_session_id_ignored(pos: Pos, cmc: FakeCmc) -> None:
    raw = {"sessionId": "mine", "transactionId": "T-9", "terminalId": "T", "posLocationId": "L"}
    assert pos.post_tender(raw).status == "delivered"
    assert b'"sessionId":"mine"' not in cmc.bodies("transaction")[0]


def test_status_counts_every_state_and_the_oldest_queued_age(pos: Pos, cmc: FakeCmc, clock: Clock) -> None:
    assert pos.post_tender(tender("T-ok")).status == "delivered"
    cmc.faults["transaction"] = [400]
    assert pos.post_tender(tender("T-bad")).status == "rejected"
    cmc.pos_status = "Disabled"
    assert pos.post_tender(tender("T-off")).status == "not-accepted"
    cmc.pos_status = "Accepted"
    cmc.valid_tokens.clear()  # the next call needs a new token, and the network is down
    cmc.faults["token"] = ["network"]
    assert pos.post_tender(tender("T-later")).status == "queued"
    clock.advance(42)

    status = pos.status()
    assert (status.delivered, status.rejected, status.not_accepted, status.queued) == (1, 1, 1, 1)
    assert status.disabled == 0
    assert status.oldest_queued_age == 42
    assert "ConnectError" in (status.last_error or "")
    assert status.last_error_at == clock.now - 42
    assert [e.transaction_id for e in pos.entries()] == ["T-ok", "T-bad", "T-off", "T-later"]
    assert [e.transaction_id for e in pos.entries("rejected")] == ["T-bad"]
    assert len(pos.entries(limit=2)) == 2


def test_delivered_rows_are_pruned_after_keep_delivered(
    make_pos: Callable[..., Pos], outbox_path: Path, clock: Clock
) -> None:
    first = make_pos(keep_delivered=3600.0)
    first.post_tender(tender("T-old"))
    first.close()
    clock.advance(3601)

    later = make_pos(keep_delivered=3600.0)
    assert later.status().delivered == 0


# --- the date of the sale --------------------------------------------------------------------------------


@pytest.mark.usefixtures("pacific")
def test_a_sale_without_a_date_carries_its_post_time_even_when_drained_later(
    pos: Pos, cmc: FakeCmc, clock: Clock
) -> None:
    cmc.faults["token"] = ["network"]  # CMC is down at the till
    result = pos.post_tender(tender())  # 2023-11-14T22:13:20Z: 14:13:20 in Los Angeles
    assert result.status == "queued"

    clock.advance(5 * 3600)  # CMC is back five hours later
    assert pos.drain().delivered == 1

    (body,) = cmc.bodies("transaction")
    assert b'"transactionDate":"2023-11-14T14:13:20-08:00"' in body
    (request,) = sent(cmc)
    assert request.transactionDate is not None
    assert request.transactionDate.timestamp() == 1_700_000_000
    assert body.endswith(pos.entry(result.outbox_id).body[1:])  # the very bytes stored at the till


@pytest.mark.usefixtures("pacific")
def test_every_send_of_a_dated_sale_carries_the_same_date(pos: Pos, cmc: FakeCmc, clock: Clock) -> None:
    cmc.faults["transaction"] = ["lose-answer"]
    pos.post_tender(tender())
    clock.advance(600)
    pos.drain()

    first, replay = cmc.bodies("transaction")
    assert first == replay
    assert b'"transactionDate":"2023-11-14T14:13:20-08:00"' in first


def test_a_sale_with_its_own_date_is_left_alone(pos: Pos, cmc: FakeCmc) -> None:
    pos.post_tender({**msgspec.to_builtins(tender()), "transactionDate": "2023-11-14T09:30:00"})

    (request,) = sent(cmc)
    assert request.transactionDate is not None
    assert request.transactionDate.isoformat() == "2023-11-14T09:30:00"  # no offset added: CMC reads it
    assert b'"transactionDate":"2023-11-14T09:30:00"' in cmc.bodies("transaction")[0]


# --- verification ----------------------------------------------------------------------------------------


def test_verify_confirms_delivered_tenders_and_names_missing_and_different_ones(
    pos: Pos, cmc: FakeCmc, outbox_path: Path
) -> None:
    for n in range(4):
        assert pos.post_tender(tender(f"T-{n}")).status == "delivered"
    cmc.faults["transaction"] = [400]
    pos.post_tender(tender("T-rejected"))  # not delivered: not checked
    del cmc.committed["T-1"]  # CMC lost it (a restored backup)
    with sqlite3.connect(outbox_path) as db:  # the outbox recorded another answer than CMC stored
        db.execute("UPDATE tender SET response = ? WHERE transaction_id = 'T-2'", (b'{"data":{}}',))

    report = pos.verify()
    assert (report.checked, report.confirmed) == (4, 2)
    assert not report.ok
    found = {d.entry.transaction_id: d.kind for d in report.discrepancies}
    assert found == {"T-1": "missing", "T-2": "different"}
    assert [e.transaction_id for e in report.missing] == ["T-1"]
    assert "404" in report.discrepancies[0].detail


def test_verify_of_a_consistent_outbox_is_ok(pos: Pos, cmc: FakeCmc) -> None:
    pos.post_tender(tender("T-1"))
    cmc.faults["transaction"] = ["lose-answer"]
    pos.post_tender(tender("T-2"))
    pos.drain()  # delivered by a replay: CMC's first answer, stored as it came

    report = pos.verify()
    assert (report.checked, report.confirmed, report.ok) == (2, 2, True)


def test_verify_names_the_company_and_reports_an_ambiguous_id(pos: Pos, cmc: FakeCmc) -> None:
    pos.post_tender(tender("T-1", posCompanyId="comp 5"))
    pos.post_tender(tender("T-2"))
    cmc.shared_ids = {"T-1", "T-2"}

    report = pos.verify()
    first, second = cmc.lookups
    assert first.params["posCompanyId"] == "comp 5"
    assert "posCompanyId" not in second.params
    assert [(d.entry.transaction_id, d.kind) for d in report.discrepancies] == [("T-2", "unverifiable")]
    assert report.missing == []


def test_verify_pages_through_the_outbox(pos: Pos, cmc: FakeCmc, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cmc_client._core.VERIFY_PAGE", 2)
    for n in range(5):
        pos.post_tender(tender(f"T-{n}"))

    report = pos.verify()
    assert (report.checked, report.confirmed) == (5, 5)
    assert [url.path.rsplit("/", 1)[-1] for url in cmc.lookups] == [f"T-{n}" for n in range(5)]


# --- close -----------------------------------------------------------------------------------------------


def close_soon_and_find_the_tender_free(pos: Pos, outbox_path: Path, clock: Clock, outbox_id: int) -> None:
    """close() with a short grace returns soon, and the next process can take the tender at once."""
    started = time.monotonic()
    pos.close(grace=0.2)
    assert time.monotonic() - started < 3.0

    entry = Outbox(outbox_path).claim_next(now=clock())  # queued, and not leased to the closed client
    assert entry is not None
    assert entry.id == outbox_id
    assert "Interrupted" in (entry.last_error or "")


def test_close_gives_up_on_a_delivery_still_waiting_and_frees_the_tender(
    pos: Pos, cmc: FakeCmc, outbox_path: Path, clock: Clock
) -> None:
    cmc.faults["transaction"] = ["hang"]
    result = pos.post_tender(tender(), deadline=0.1)
    assert result.status == "queued"

    close_soon_and_find_the_tender_free(pos, outbox_path, clock, result.outbox_id)


def test_close_while_the_drainer_waits_on_cmc_leaves_the_tender_queued(
    make_pos: Callable[..., Pos], cmc: FakeCmc, outbox_path: Path, clock: Clock
) -> None:
    pos = make_pos(poll_interval=0.02)
    cmc.faults["token"] = ["network"]
    result = pos.post_tender(tender())
    cmc.faults["transaction"] = ["hang"]
    pos.start()
    assert pos.until(lambda: cmc.count("transaction") == 1)  # the drainer is waiting on CMC

    close_soon_and_find_the_tender_free(pos, outbox_path, clock, result.outbox_id)


def test_close_waits_for_a_delivery_that_ends_within_the_grace(
    pos: Pos, cmc: FakeCmc, outbox_path: Path
) -> None:
    cmc.faults["transaction"] = ["hang"]
    result = pos.post_tender(tender(), deadline=0.1)
    threading.Timer(0.2, cmc.release.set).start()

    pos.close(grace=10.0)
    entry = Outbox(outbox_path).get(result.outbox_id)
    assert entry is not None
    assert entry.state == "queued"
    assert entry.attempts == 1
    assert "ReadTimeout" in (entry.last_error or "")  # the attempt's own outcome, not "closed"
