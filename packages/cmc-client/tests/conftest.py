"""Fixtures for the SDK tests: a fake CMC behind MockTransport, clients on a temp outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
import stamina
from sdk_fake_cmc import URL, Clock, FakeCmc

from cmc_client import AsyncClient, Client


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture
def cmc() -> Iterator[FakeCmc]:
    fake = FakeCmc()
    yield fake
    fake.release.set()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.sqlite3"


@pytest.fixture
def client(cmc: FakeCmc, outbox_path: Path, clock: Clock) -> Iterator[Client]:
    http = httpx2.Client(transport=cmc.transport())
    with Client(URL, "pax", "pos-demo", "s3cr3t!", outbox_path=outbox_path, http=http, clock=clock) as c:
        yield c
    http.close()


@pytest.fixture
async def aclient(cmc: FakeCmc, outbox_path: Path) -> AsyncIterator[AsyncClient]:
    http = httpx2.AsyncClient(transport=cmc.async_transport())
    async with AsyncClient(URL, "pax", "pos-demo", "s3cr3t!", outbox_path=outbox_path, http=http) as c:
        yield c
    await http.aclose()
