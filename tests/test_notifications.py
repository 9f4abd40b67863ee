"""PostgreSQL LISTEN/NOTIFY wakes a process's pollers when another process commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import text

from blackhole import blackhole_for
from cmc.store import notifications
from cmc.store.database import Database, libpq_dsn

pytestmark = pytest.mark.usefixtures("garbage_collected")


async def test_a_committed_notify_wakes_the_listener(database_url: str, backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite processes rely on polling")
    woken = asyncio.Event()
    calls: list[str] = []

    def on_cfs() -> None:
        calls.append("cfs")
        if len(calls) > 1:  # the first call is the catch-up after connecting
            woken.set()

    listener = notifications.Listener(libpq_dsn(database_url), {notifications.CFS_CHANNEL: on_cfs})
    await listener.start()
    db = Database.open(database_url)
    try:
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.02)
        assert calls == ["cfs"]
        await db.write(notifications.notify, notifications.CFS_CHANNEL)
        await asyncio.wait_for(woken.wait(), 2)
    finally:
        await listener.stop()
        await db.close()


async def test_notify_is_a_no_op_on_sqlite(tmp_path: object) -> None:
    db = Database.open(f"sqlite:///{tmp_path}/x.db")
    try:
        await db.write(notifications.notify, notifications.CFS_CHANNEL)
    finally:
        await db.close()


# --- a lost or refused connection: the listener reconnects --------------------------------------


class Connections:
    """``Listener``'s connect: the real ``asyncpg.connect``, failing first with ``errors`` (one per try).

    Keeps every connection it made, so a test can find the listener's backend.
    """

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.made: list[asyncpg.Connection] = []

    async def __call__(self, dsn: str) -> asyncpg.Connection:
        if self.errors:
            raise self.errors.pop(0)
        conn = await asyncpg.connect(dsn)
        self.made.append(conn)
        return conn


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.InternalClientError("cannot switch to state 15; another operation (2) is in progress"),
    ],
    ids=["interface-error", "internal-client-error"],
)
async def test_a_driver_error_while_connecting_does_not_end_the_listener(
    database_url: str, backend: str, error: Exception, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's own errors (not only OSError and PostgresError) are a lost connection: retried."""
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    monkeypatch.setattr(notifications, "RECONNECT_SECONDS", 0.05)
    calls: list[str] = []
    connections = Connections(error)
    listener = notifications.Listener(
        libpq_dsn(database_url), {notifications.CFS_CHANNEL: lambda: calls.append("cfs")}, connect=connections
    )
    await listener.start()
    db = Database.open(database_url)
    try:
        await wait_until(lambda: calls == ["cfs"])  # connected on the second try, caught up once
        await db.write(notifications.notify, notifications.CFS_CHANNEL)
        await wait_until(lambda: len(calls) == 2)
    finally:
        await listener.stop()
        await db.close()
    assert connections.errors == []


async def test_the_listener_reconnects_after_its_backend_is_terminated(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    monkeypatch.setattr(notifications, "RECONNECT_SECONDS", 0.05)
    calls: list[str] = []
    connections = Connections()
    listener = notifications.Listener(
        libpq_dsn(database_url), {notifications.CFS_CHANNEL: lambda: calls.append("cfs")}, connect=connections
    )
    await listener.start()
    db = Database.open(database_url)
    try:
        await wait_until(lambda: calls == ["cfs"])
        pid = connections.made[0].get_server_pid()
        await db.write(lambda conn: conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}))
        await wait_until(lambda: calls == ["cfs", "cfs"])  # a new connection, and its catch-up
        await db.write(notifications.notify, notifications.CFS_CHANNEL)
        await wait_until(lambda: len(calls) == 3)
    finally:
        await listener.stop()
        await db.close()
    assert len(connections.made) == 2


async def test_the_listener_reconnects_when_its_connection_falls_silent(
    database_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A half-open connection (no FIN, no RST: a network cut) is found by the heartbeat and replaced.

    Without the heartbeat the listener would wait on it for ever, and every wake-up would be left
    to the slow poll for the rest of the process's life.
    """
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    monkeypatch.setattr(notifications, "RECONNECT_SECONDS", 0.05)
    monkeypatch.setattr(notifications, "HEARTBEAT_SECONDS", 0.1)
    monkeypatch.setattr(notifications, "HEARTBEAT_TIMEOUT_SECONDS", 1.0)
    monkeypatch.setattr(notifications, "CLOSE_TIMEOUT_SECONDS", 0.2)
    calls: list[str] = []
    dsns: list[str] = []
    async with blackhole_for(database_url) as proxy:

        async def connect(_dsn: str) -> asyncpg.Connection:
            # The first connection goes through the proxy; once it falls silent, the network heals
            # by another route (the proxy's own later connections would be silent too).
            dsn = libpq_dsn(database_url if dsns else proxy.url_for(database_url))
            dsns.append(dsn)
            return await asyncpg.connect(dsn)

        listener = notifications.Listener(
            libpq_dsn(database_url), {notifications.CFS_CHANNEL: lambda: calls.append("cfs")}, connect=connect
        )
        await listener.start()
        db = Database.open(database_url)
        try:
            await wait_until(lambda: calls == ["cfs"])
            await asyncio.sleep(0.5)  # heartbeats answered: still the first connection
            assert len(dsns) == 1
            proxy.silence()
            await wait_until(lambda: calls == ["cfs", "cfs"])  # a new connection, and its catch-up
            await db.write(notifications.notify, notifications.CFS_CHANNEL)
            await wait_until(lambda: len(calls) == 3)
        finally:
            await asyncio.wait_for(listener.stop(), 10)
            await db.close()
    assert len(dsns) == 2
