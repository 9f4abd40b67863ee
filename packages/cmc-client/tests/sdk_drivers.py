"""Both SDK drivers behind one interface, so every delivery test runs against Client and AsyncClient.

A :class:`Pos` is called the same way whichever driver it wraps: the sync ``Client`` directly, the
``AsyncClient`` on an event loop of its own (a thread), each call waited for. Background work (the
drainer, attempts past their deadline) runs for real: threads for one, tasks on that loop for the other.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx2

from cmc_client import (
    AsyncClient,
    Client,
    DrainReport,
    OutboxEntry,
    OutboxState,
    OutboxStatus,
    TenderInput,
    TenderResult,
    VerifyReport,
    wire,
)

POS, CLIENT_ID, SECRET = "pax", "pax-demo", "s3cr3t!"
Driver = Literal["sync", "async"]
DRIVERS: list[Driver] = ["sync", "async"]


class Network(Protocol):
    """What a POS under test talks through: the fake CMC, or a tap in front of the real one."""

    def sync_transport(self) -> httpx2.BaseTransport: ...

    def async_transport(self) -> httpx2.AsyncBaseTransport: ...


class Pos:
    """One POS client under test, called the same way whichever driver it wraps."""

    def __init__(self, client: Client | AsyncClient, loop: asyncio.AbstractEventLoop | None) -> None:
        self.client = client
        self._loop = loop
        self.closed = False

    def _wait(self, result: Any) -> Any:
        """The sync client's return value, or the async client's coroutine run to its end on its loop."""
        if self._loop is None:
            return result
        return asyncio.run_coroutine_threadsafe(result, self._loop).result(timeout=60)

    def cancel_after(self, call: Callable[[AsyncClient], Any], *, when: Callable[[], bool]) -> Any:
        """(AsyncClient only) Start ``call(client)`` as a task, cancel it once ``when()``; return its end.

        Returns the task's result, or the ``asyncio.CancelledError`` it ended with.
        """
        assert self._loop is not None
        assert isinstance(self.client, AsyncClient)
        client = self.client

        async def run() -> Any:
            task = asyncio.ensure_future(call(client))
            assert await asyncio.to_thread(self.until, when), "the call never got that far"
            task.cancel()
            try:
                return await task
            except asyncio.CancelledError as cancelled:
                return cancelled

        return self._wait(run())

    def post_tender(self, tender: TenderInput, *, deadline: float = 2.0) -> TenderResult:
        result: TenderResult = self._wait(self.client.post_tender(tender, deadline=deadline))
        return result

    def drain(self, *, limit: int | None = None) -> DrainReport:
        report: DrainReport = self._wait(self.client.drain(limit=limit))
        return report

    def verify(self) -> VerifyReport:
        report: VerifyReport = self._wait(self.client.verify())
        return report

    def start(self) -> None:
        self._wait(self.client.start())

    def close(self, *, grace: float = 5.0) -> None:
        if not self.closed:
            self.closed = True
            self._wait(self.client.close(grace=grace))

    def status(self) -> OutboxStatus:
        status: OutboxStatus = self._wait(self.client.status())
        return status

    def entries(self, state: OutboxState | None = None, *, limit: int = 100) -> list[OutboxEntry]:
        entries: list[OutboxEntry] = self._wait(self.client.entries(state, limit=limit))
        return entries

    def entry(self, outbox_id: int) -> OutboxEntry:
        """One outbox row as stored now."""
        found = self.client.outbox.get(outbox_id)
        assert found is not None
        return found

    def retry(self, outbox_id: int) -> OutboxEntry:
        entry: OutboxEntry = self._wait(self.client.retry(outbox_id))
        return entry

    def settings(self, *, refresh: bool = False) -> wire.SettingsData:
        settings: wire.SettingsData = self._wait(self.client.settings(refresh=refresh))
        return settings

    def until(self, condition: Callable[[], bool], *, timeout: float = 10.0) -> bool:
        """Poll ``condition`` (background work of this POS doing something) until true or ``timeout``."""
        give_up_at = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > give_up_at:
                return False
            time.sleep(0.01)
        return True


class Drivers:
    """Makes POS clients of one driver for a test, and closes them all at its end."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._made: list[tuple[Pos, httpx2.Client | httpx2.AsyncClient | None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        if driver == "async":
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="sdk-test-loop", daemon=True)
            self._thread.start()

    def pos(self, url: str, outbox_path: Path, network: Network | None = None, **options: Any) -> Pos:
        """A POS client of this driver for CMC at ``url`` (through ``network`` when given)."""
        http: httpx2.Client | httpx2.AsyncClient | None
        if self._loop is None:
            http = httpx2.Client(transport=network.sync_transport(), timeout=10) if network else None
            client: Client | AsyncClient = Client(
                url, POS, CLIENT_ID, SECRET, outbox_path=outbox_path, http=http, **options
            )
        else:
            http = httpx2.AsyncClient(transport=network.async_transport(), timeout=10) if network else None
            client = AsyncClient(url, POS, CLIENT_ID, SECRET, outbox_path=outbox_path, http=http, **options)
        pos = Pos(client, self._loop)
        self._made.append((pos, http))
        return pos

    def close(self) -> None:
        for pos, http in self._made:
            pos.close(grace=1.0)
            if isinstance(http, httpx2.Client):
                http.close()
            elif http is not None:
                pos._wait(http.aclose())
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
