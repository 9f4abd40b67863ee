"""PostgreSQL LISTEN/NOTIFY wakes a process's pollers when another process commits."""

from __future__ import annotations

import asyncio

import pytest

from cmc.store import notifications
from cmc.store.database import Database, libpq_dsn


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
