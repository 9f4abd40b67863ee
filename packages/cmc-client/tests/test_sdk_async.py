"""What only the AsyncClient has: cancellation. A cancelled call leaves the outbox consistent.

Everything else the two drivers share is tested once for both (``test_sdk_delivery.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_drivers import Drivers, Pos
from sdk_fake_cmc import URL, Clock, FakeCmc
from test_sdk_delivery import tender

from cmc_client import Outbox


@pytest.fixture
def apos(cmc: FakeCmc, outbox_path: Path, clock: Clock) -> Iterator[Pos]:
    drivers = Drivers("async")
    yield drivers.pos(URL, outbox_path, cmc, clock=clock)
    cmc.release.set()
    drivers.close()


def test_a_cancelled_post_tender_goes_on_delivering_in_the_background(apos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["transaction"] = ["hold"]

    ended = apos.cancel_after(lambda c: c.post_tender(tender(), deadline=30), when=cmc.holding.is_set)
    assert isinstance(ended, asyncio.CancelledError)

    cmc.release.set()
    assert apos.until(lambda: apos.status().delivered == 1)
    assert list(cmc.committed) == ["T-1"]


def test_a_cancelled_drain_leaves_its_tender_queued_and_free(
    apos: Pos, cmc: FakeCmc, outbox_path: Path, clock: Clock
) -> None:
    cmc.faults["token"] = ["network"]
    result = apos.post_tender(tender())
    cmc.faults["transaction"] = ["hang"]

    ended = apos.cancel_after(lambda c: c.drain(), when=lambda: cmc.count("transaction") == 1)
    assert isinstance(ended, asyncio.CancelledError)

    entry = Outbox(outbox_path).claim_next(now=clock())  # another process may take it at once
    assert entry is not None
    assert entry.id == result.outbox_id
    assert entry.last_error == "Interrupted: the task was cancelled"
    cmc.release.set()


def test_a_cancelled_settings_lookup_is_cancelled(apos: Pos, cmc: FakeCmc) -> None:
    cmc.faults["settings"] = ["hold"]

    ended = apos.cancel_after(lambda c: c.settings(), when=cmc.holding.is_set)
    assert isinstance(ended, asyncio.CancelledError)
    cmc.release.set()
    assert apos.settings().companySettings.isTransactionsEnabled
