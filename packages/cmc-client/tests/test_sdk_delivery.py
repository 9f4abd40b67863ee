"""post_tender against a fake CMC: delivered, queued, rejected, replays, sessions, tokens, settings."""

from __future__ import annotations

import time
from decimal import Decimal

import msgspec
import pytest
from sdk_fake_cmc import Clock, FakeCmc

from cmc_client import Client, Customer, DuplicateTransactionError, InvalidTenderError, Product, Tender, wire


def tender(tx_id: str = "T-1") -> Tender:
    return Tender(
        transactionId=tx_id,
        terminalId="TERM-05",
        posLocationId="LOC123",
        transactionType="Sale",
        transactionAmount=Decimal("12.50"),
        customer=Customer(id="C-1", firstName="Ada", contacts=[wire.Contact(email="ada@example.com")]),
        products=[Product(productId="P-1", productName="Latte", quantity=Decimal(2))],
    )


def test_delivered_with_the_full_typed_response(client: Client, cmc: FakeCmc) -> None:
    result = client.post_tender(tender())

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
    assert client.status().delivered == 1


def test_amounts_go_out_as_json_numbers_with_the_session(client: Client, cmc: FakeCmc) -> None:
    client.post_tender(tender())

    (body,) = cmc.bodies("transaction")
    assert b'"transactionAmount":12.50' in body
    sent = msgspec.json.decode(body, type=wire.TransactionRequest)
    assert sent.sessionId in cmc.sessions
    assert sent.transactionId == "T-1"


def test_queued_on_network_error_then_delivered_by_drain(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"]

    result = client.post_tender(tender())
    assert result.status == "queued"
    assert "ConnectError" in (result.reason or "")
    assert client.status().queued == 1
    assert client.status().last_error is not None

    report = client.drain()
    assert (report.delivered, report.remaining, report.error) == (1, 0, None)
    assert list(cmc.committed) == ["T-1"]


def test_drain_retries_5xx_and_429_with_backoff(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = [503]
    assert client.post_tender(tender()).status == "queued"
    cmc.faults["transaction"] = [429, 502]

    assert client.drain().delivered == 1
    assert cmc.count("transaction") == 4


def test_drain_stops_when_cmc_stays_down_and_keeps_order(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"] * 4  # 1 post (the next 2 skip CMC), 3 attempts of one drain
    for n in range(3):
        client.post_tender(tender(f"T-{n}"))

    assert cmc.count("token") == 1
    report = client.drain()
    assert report.delivered == 0
    assert report.remaining == 3
    assert "ConnectError" in (report.error or "")

    client.drain()
    assert list(cmc.committed) == ["T-0", "T-1", "T-2"]


def test_lost_answer_is_resent_identically_and_counted_once(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["lose-answer"]

    assert client.post_tender(tender()).status == "queued"
    assert list(cmc.committed) == ["T-1"]  # CMC has it; the POS does not know yet

    result = client.drain()
    assert result.delivered == 1
    first, replay = cmc.bodies("transaction")
    assert first == replay
    assert len(cmc.committed) == 1
    assert client.entries("delivered")[0].transaction_id == "T-1"


@pytest.mark.parametrize("status", [400, 409])
def test_4xx_is_rejected_and_stays_until_retried(client: Client, cmc: FakeCmc, status: int) -> None:
    cmc.faults["transaction"] = [status]

    result = client.post_tender(tender())
    assert result.status == "rejected"
    assert result.problem is not None
    assert result.problem.status == status

    assert client.drain().delivered == 0
    assert client.status().rejected == 1
    assert cmc.count("transaction") == 1

    client.retry(result.outbox_id)
    assert client.drain().delivered == 1


def test_retry_of_a_tender_that_is_not_rejected_is_a_key_error(client: Client) -> None:
    result = client.post_tender(tender())
    with pytest.raises(KeyError):
        client.retry(result.outbox_id)


def test_token_is_cached_then_renewed_five_minutes_before_expiry(
    client: Client, cmc: FakeCmc, clock: Clock
) -> None:
    client.post_tender(tender("T-1"))
    clock.now += 3600 - 301
    client.post_tender(tender("T-2"))
    assert cmc.tokens_issued == 1

    clock.now += 2
    client.post_tender(tender("T-3"))
    assert cmc.tokens_issued == 2
    assert len(cmc.committed) == 3


def test_401_reauthenticates_once(client: Client, cmc: FakeCmc) -> None:
    client.post_tender(tender("T-1"))
    cmc.valid_tokens.clear()  # CMC restarted with a new signing key

    assert client.post_tender(tender("T-2")).status == "delivered"
    assert cmc.tokens_issued == 2


def test_refused_credentials_keep_the_tender_queued(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["token"] = [400]

    result = client.post_tender(tender())
    assert result.status == "queued"
    assert "AuthenticationError" in (result.reason or "")


@pytest.mark.parametrize("fault", ["session-expired", "session-unknown"])
def test_session_lost_mid_flight_gets_a_fresh_one_with_the_same_transaction(
    client: Client, cmc: FakeCmc, fault: str
) -> None:
    cmc.faults["transaction"] = [fault]

    assert client.post_tender(tender()).status == "delivered"
    first, second = (msgspec.json.decode(b, type=wire.TransactionRequest) for b in cmc.bodies("transaction"))
    assert first.transactionId == second.transactionId == "T-1"
    assert first.sessionId != second.sessionId
    assert cmc.count("start") == 2
    assert list(cmc.committed) == ["T-1"]


def test_settings_with_transactions_disabled_send_nothing(client: Client, cmc: FakeCmc) -> None:
    cmc.transactions_enabled = False

    result = client.post_tender(tender())
    assert result.status == "disabled"
    assert "isTransactionsEnabled" in (result.reason or "")
    assert cmc.count("start") == cmc.count("transaction") == 0
    assert client.status().disabled == 1
    assert client.settings().companySettings.isTransactionsEnabled is False


def test_settings_are_cached(client: Client, cmc: FakeCmc) -> None:
    client.post_tender(tender("T-1"))
    client.post_tender(tender("T-2"))
    assert cmc.count("settings") == 1
    client.settings(refresh=True)
    assert cmc.count("settings") == 2


def test_pos_status_not_accepted_is_reported_not_retried(client: Client, cmc: FakeCmc) -> None:
    cmc.pos_status = "Disabled"

    result = client.post_tender(tender())
    assert result.status == "not-accepted"
    assert "Disabled" in (result.reason or "")
    assert client.drain().delivered == 0
    assert cmc.count("start") == 1


def test_deadline_is_respected_when_cmc_hangs(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["hang"]

    started = time.monotonic()
    result = client.post_tender(tender(), deadline=0.2)
    elapsed = time.monotonic() - started

    assert result.status == "queued"
    assert elapsed < 0.3
    cmc.release.set()
    client.close(grace=1.0)


def test_posting_the_same_tender_again_does_not_send_it_twice(client: Client, cmc: FakeCmc) -> None:
    first = client.post_tender(tender())
    again = client.post_tender(tender())

    assert again.status == "delivered"
    assert again.outbox_id == first.outbox_id
    assert again.response == first.response
    assert cmc.count("transaction") == 1


def test_same_transaction_id_with_another_body_is_refused_locally(client: Client) -> None:
    client.post_tender(tender())
    with pytest.raises(DuplicateTransactionError):
        client.post_tender(msgspec.structs.replace(tender(), transactionAmount=Decimal("99.00")))


def test_an_invalid_tender_raises(client: Client) -> None:
    with pytest.raises(InvalidTenderError):
        client.post_tender({"transactionId": "", "terminalId": "T", "posLocationId": "L"})


def test_a_mapping_is_accepted_and_its_session_id_ignored(client: Client, cmc: FakeCmc) -> None:
    raw = {"sessionId": "mine", "transactionId": "T-9", "terminalId": "T", "posLocationId": "L"}
    assert client.post_tender(raw).status == "delivered"
    assert b'"sessionId":"mine"' not in cmc.bodies("transaction")[0]


def test_background_drainer_delivers_when_cmc_is_back(client: Client, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["network"]
    assert client.post_tender(tender()).status == "queued"

    client._poll_interval = 0.02
    client.start()
    deadline = time.monotonic() + 0.9
    while client.status().queued and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.status().delivered == 1
