"""The app's shutdown: every step runs (loops stopped, database closed) even when one before it fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import make_url

from cmc.api.app import create_app
from cmc.api.services import Services
from cmc.cfs_feed import CfsFeed
from cmc.config import Settings
from cmc.errors import StoreUnavailable
from cmc.outbox.dispatch import Dispatcher
from cmc.outbox.worker import run_worker
from cmc.rollup import Rollups
from cmc.store.database import Database
from support import Lifespan


def failing_after(stop: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    """``stop`` as it is, then an error: the step did its work, and its failure is all that is new."""

    async def stop_then_fail(self: Any) -> None:
        await stop(self)
        raise RuntimeError("stop failed")

    return stop_then_fail


def running_loops() -> list[str]:
    """The service's background tasks still running (each loop names its task ``cmc-...``)."""
    return sorted(
        t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("cmc-") and not t.done()
    )


async def app_connections(database_url: str, *, listening: bool = False) -> int:
    """Backends connected to the test's own PostgreSQL database (this check's own connection aside);
    ``listening``: only those that ran ``LISTEN`` last (the notification listener's)."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database
    )
    try:
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()"
        if listening:
            query += " AND query LIKE 'LISTEN %'"
        return int(await conn.fetchval(query, url.database))
    finally:
        await conn.close()


async def started(settings: Settings, backend: str) -> None:
    """Wait until the PostgreSQL listener is connected: a shutdown then stops it as it usually runs
    (cancelled halfway through its connect, asyncpg would log an unretrieved future)."""
    for _ in range(250):
        if backend == "sqlite" or await app_connections(settings.database_url, listening=True):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the listener never connected")


async def assert_closed(db: Database, settings: Settings, backend: str) -> None:
    if backend == "sqlite":
        with pytest.raises(StoreUnavailable):
            await db.write(lambda conn: None)
    else:
        assert await app_connections(settings.database_url) == 0


async def test_a_failing_step_does_not_skip_the_rest_of_the_shutdown(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Fault injection on the real parts: the first step of the shutdown (the roll-up) and one in
    # the middle (the CFS feed) stop as usual, then raise.
    monkeypatch.setattr(Rollups, "stop", failing_after(Rollups.stop))
    monkeypatch.setattr(CfsFeed, "stop", failing_after(CfsFeed.stop))
    app = create_app(settings)
    async with Lifespan(app):
        db = Services.of_app(app.app).db
        await started(settings, backend)
        assert "cmc-outbox-dispatcher" in running_loops()
    assert running_loops() == []  # the dispatcher, the listener and the directory stopped too
    await assert_closed(db, settings, backend)
    failed = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if "shutdown step failed" in line
    ]
    assert [(entry["step"], entry["level"]) for entry in failed] == [("rollups", "error"), ("feed", "error")]
    assert all("RuntimeError: stop failed" in entry["exception"] for entry in failed)


async def test_a_clean_shutdown_stops_every_loop_and_closes_the_database(
    settings: Settings, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)
    async with Lifespan(app):
        db = Services.of_app(app.app).db
        await started(settings, backend)
    assert running_loops() == []
    await assert_closed(db, settings, backend)
    assert "shutdown step failed" not in capsys.readouterr().err


async def test_the_worker_closes_its_database_when_its_dispatcher_fails_to_stop(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(Dispatcher, "stop", failing_after(Dispatcher.stop))
    opened: list[Database] = []
    open_database = Settings.open_database

    def keep(self: Settings) -> Database:
        opened.append(open_database(self))
        return opened[-1]

    monkeypatch.setattr(Settings, "open_database", keep)
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(settings, stop=stop))
    for _ in range(250):
        if "cmc-outbox-dispatcher" in running_loops():
            break
        await asyncio.sleep(0.02)
    stop.set()
    await worker  # the failure is logged, not raised
    assert running_loops() == []
    await assert_closed(opened[0], settings, backend)
    assert '"step": "dispatcher"' in capsys.readouterr().err
