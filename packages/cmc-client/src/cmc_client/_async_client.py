"""The asyncio POS client: the core's flows performed on the event loop (outbox work in a thread)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from cmc_client import wire
from cmc_client._core import ClientCore
from cmc_client._outbox import OutboxEntry, OutboxState, OutboxStatus
from cmc_client._results import DrainReport, TenderResult, VerifyReport
from cmc_client._steps import (
    Call,
    Concurrently,
    Finished,
    Flow,
    Interrupted,
    Local,
    Pause,
    Retrying,
    Step,
    advance,
)
from cmc_client._tender import TenderInput

T = TypeVar("T")


class AsyncClient(ClientCore[httpx2.AsyncClient]):
    """Posts tenders to CMC from an asyncio POS: :class:`~cmc_client.Client`'s methods, awaitable.

    Same constructor, with ``http: httpx2.AsyncClient | None``. Outbox work runs in a worker thread so
    an fsync never blocks the event loop. Cancelling a call leaves the outbox consistent: the tender
    stays queued (a ``post_tender`` attempt past its deadline goes on in the background).
    """

    def _open(
        self, http: httpx2.AsyncClient | None, *, timeout: httpx2.Timeout, workers: int
    ) -> httpx2.AsyncClient:
        self._slots = asyncio.Semaphore(workers)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drainer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        return http if http is not None else httpx2.AsyncClient(timeout=timeout)

    async def post_tender(self, tender: TenderInput, *, deadline: float = 2.0) -> TenderResult:
        """Awaitable :meth:`Client.post_tender <cmc_client.Client.post_tender>`."""
        return await self._run(self._post(tender, deadline))

    async def drain(self, *, limit: int | None = None) -> DrainReport:
        """Awaitable :meth:`Client.drain <cmc_client.Client.drain>`."""
        return await self._run(self._drain(limit))

    async def start(self) -> AsyncClient:
        """Start the background drainer task (idempotent); returns the client."""
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._run(self._drain_forever()), name="cmc-client-drainer")
        return self

    async def close(self, *, grace: float = 5.0) -> None:
        """Awaitable :meth:`Client.close <cmc_client.Client.close>`; what is still running is cancelled."""
        self._closing.set()
        self._wake.set()
        running = {*self._tasks, *([self._drainer] if self._drainer else [])}
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:  # each records that it was cut short
                await asyncio.wait(late)
        await self._run(self._abandon())
        if self._owns_http:
            await self._http.aclose()
        self.outbox.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def status(self) -> OutboxStatus:
        """Awaitable :meth:`Client.status <cmc_client.Client.status>`."""
        return await self._run(self._status())

    async def entries(self, state: OutboxState | None = None, *, limit: int = 100) -> list[OutboxEntry]:
        """Awaitable :meth:`Client.entries <cmc_client.Client.entries>`."""
        return await self._run(self._entries(state, limit))

    async def retry(self, outbox_id: int) -> OutboxEntry:
        """Awaitable :meth:`Client.retry <cmc_client.Client.retry>`."""
        return await self._run(self._retry(outbox_id))

    async def settings(self, *, refresh: bool = False) -> wire.SettingsData:
        """Awaitable :meth:`Client.settings <cmc_client.Client.settings>`."""
        return await self._run(self._settings(refresh))

    async def verify(self) -> VerifyReport:
        """Awaitable :meth:`Client.verify <cmc_client.Client.verify>`."""
        return await self._run(self._verify())

    # --- performing steps ----------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        """Run a flow to its end; if the task was cancelled meanwhile, end it cancelled."""
        try:
            value = await self._steps(flow)
        except Interrupted:
            if _cancelling():
                raise asyncio.CancelledError from None
            raise
        if _cancelling():  # the flow has recorded what it had to; now the task ends as asked
            raise asyncio.CancelledError
        return value

    async def _steps(self, flow: Flow[T]) -> T:
        step = advance(flow)
        while not isinstance(step, Finished):
            try:
                answer = await self._perform(step)
            except Exception as exc:  # the flow decides what an error means
                step = advance(flow, error=exc)
            else:
                step = advance(flow, answer)
        return step.value

    async def _perform(self, step: Step) -> object:
        """Perform one step; a cancellation reaches the flow as :class:`Interrupted`."""
        if isinstance(step, Local):
            return await _to_the_end(asyncio.to_thread(step.work))
        if _cancelling():
            raise Interrupted("the task was cancelled")
        try:
            return await self._perform_io(step)
        except asyncio.CancelledError:
            raise Interrupted("the task was cancelled") from None

    async def _perform_io(self, step: Step) -> object:
        if isinstance(step, Call):
            content = step.content or None
            return await self._http.request(step.method, step.url, headers=step.headers, content=content)
        if isinstance(step, Concurrently):
            return await self._in_background(step)
        if isinstance(step, Retrying):
            async for attempt in step.backoff():
                with attempt:
                    return await self._steps(step.attempt())
            raise AssertionError("stamina ends with a return or an exception")
        assert isinstance(step, Pause), step
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), step.seconds)
        if self._closing.is_set():
            raise Interrupted("the client is closing")
        return None

    async def _in_background(self, step: Concurrently) -> object:
        task = asyncio.create_task(self._with_slot(step.flow))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), step.wait)
        except TimeoutError:
            return None

    async def _with_slot(self, flow: Flow[T]) -> T:
        async with self._slots:
            return await self._run(flow)


def _cancelling() -> bool:
    """Whether the current task has been asked to cancel."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _to_the_end(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even when the task is cancelled meanwhile (it stays cancelling)."""
    job = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            if job.cancelled():
                raise
