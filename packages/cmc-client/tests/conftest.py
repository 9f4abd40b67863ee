"""Fixtures for the SDK tests: a fake CMC behind MockTransport, POS clients of both drivers on a temp outbox.

``pos`` (and ``make_pos`` for other options) is parametrised over the drivers: every test that takes
it runs once with ``Client`` and once with ``AsyncClient``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
from sdk_drivers import DRIVERS, Drivers, Pos
from sdk_fake_cmc import URL, Clock, FakeCmc


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3):
        yield


@pytest.fixture(params=DRIVERS)
def drivers(request: pytest.FixtureRequest) -> Iterator[Drivers]:
    made = Drivers(request.param)
    yield made
    made.close()


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
def make_pos(drivers: Drivers, cmc: FakeCmc, outbox_path: Path, clock: Clock) -> Callable[..., Pos]:
    """A POS client on the fake CMC and the test's clock, with other options if given."""

    def make(**options: Any) -> Pos:
        return drivers.pos(URL, outbox_path, cmc, **{"clock": clock, **options})

    return make


@pytest.fixture
def pos(make_pos: Callable[..., Pos]) -> Pos:
    return make_pos()


@pytest.fixture
def pacific() -> Iterator[None]:
    """The machine's local time zone is America/Los_Angeles (UTC-8 in November) for this test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TZ", "America/Los_Angeles")
        time.tzset()
        yield
    time.tzset()
