"""AsyncClient: the same behaviour through the asyncio driver."""

from __future__ import annotations

import time

from sdk_fake_cmc import FakeCmc

from cmc_client import AsyncClient, Tender


def tender(tx_id: str = "T-1") -> Tender:
    return Tender(transactionId=tx_id, terminalId="TERM-05", posLocationId="LOC123")


async def test_delivered(aclient: AsyncClient) -> None:
    result = await aclient.post_tender(tender())
    assert result.status == "delivered"
    assert result.qr_link == "https://cmc.test/s/abc1"
    assert (await aclient.status()).delivered == 1


async def test_lost_answer_then_drain_counts_once(aclient: AsyncClient, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["lose-answer"]
    assert (await aclient.post_tender(tender())).status == "queued"

    assert (await aclient.drain()).delivered == 1
    first, replay = cmc.bodies("transaction")
    assert first == replay
    assert len(cmc.committed) == 1


async def test_rejected_stays_until_retried(aclient: AsyncClient, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = [409]
    result = await aclient.post_tender(tender())
    assert result.status == "rejected"
    assert (await aclient.drain()).delivered == 0
    await aclient.retry(result.outbox_id)
    assert (await aclient.drain()).delivered == 1


async def test_deadline_when_cmc_hangs(aclient: AsyncClient, cmc: FakeCmc) -> None:
    cmc.faults["token"] = ["hang"]
    started = time.monotonic()
    result = await aclient.post_tender(tender(), deadline=0.2)
    assert result.status == "queued"
    assert time.monotonic() - started < 0.3
    cmc.release.set()


async def test_settings_disabled(aclient: AsyncClient, cmc: FakeCmc) -> None:
    cmc.transactions_enabled = False
    assert (await aclient.post_tender(tender())).status == "disabled"
    assert not (await aclient.settings()).companySettings.isTransactionsEnabled


async def test_background_drainer(aclient: AsyncClient, cmc: FakeCmc) -> None:
    import asyncio

    cmc.faults["token"] = ["network"]
    assert (await aclient.post_tender(tender())).status == "queued"
    aclient._poll_interval = 0.02
    await aclient.start()
    for _ in range(50):
        if (await aclient.status()).delivered:
            break
        await asyncio.sleep(0.01)
    assert (await aclient.status()).delivered == 1
