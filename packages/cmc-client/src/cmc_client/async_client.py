"""The asyncio POS client: the same methods as :class:`cmc_client.Client`, awaitable."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx2
import stamina

from cmc_client import wire
from cmc_client.delivery import (
    Circuit,
    describe,
    queued,
    record,
    record_failure,
    result_of,
    should_retry,
    store,
    tender_ref,
)
from cmc_client.errors import AuthenticationError, OutboxError, TransientError
from cmc_client.outbox import Entry, Outbox, State, Status
from cmc_client.protocol import Call, Conversation, Flow, Outcome
from cmc_client.results import DrainReport, TenderResult
from cmc_client.tender import TenderInput

T = TypeVar("T")
log = logging.getLogger("cmc_client")


class AsyncClient:
    """Posts tenders to CMC from an asyncio POS; see :class:`cmc_client.Client` for the behaviour.

    ``http`` may be any ``httpx2.AsyncClient`` (e.g. with ``httpx2.ASGITransport``). Outbox writes run
    in a worker thread so an fsync never blocks the event loop.
    """

    def __init__(
        self,
        base_url: str,
        pos_system_id: str,
        client_id: str,
        client_secret: str,
        *,
        outbox_path: str | Path,
        http: httpx2.AsyncClient | None = None,
        request_timeout: float = 10.0,
        settings_ttl: float = 900.0,
        retry_attempts: int = 5,
        retry_timeout: float = 30.0,
        retry_wait_max: float = 5.0,
        poll_interval: float = 5.0,
        offline_window: float = 1.0,
        keep_delivered: float = 7 * 86400.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = Outbox(outbox_path, lease=max(120.0, 12 * request_timeout))
        """The tender outbox (also usable on its own)."""
        self._clock = clock
        self.outbox.prune(before=clock() - keep_delivered)
        self._owns_http = http is None
        self._http = http or httpx2.AsyncClient(timeout=httpx2.Timeout(request_timeout, connect=3.0))
        self._conversation = Conversation(
            base_url, pos_system_id, client_id, client_secret, clock=clock, settings_ttl=settings_ttl
        )
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self._retry_wait_max = retry_wait_max
        self._poll_interval = poll_interval
        self._circuit = Circuit(offline_window)
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task[TenderResult]] = set()
        self._drainer: asyncio.Task[None] | None = None

    async def post_tender(self, tender: TenderInput, *, deadline: float = 2.0) -> TenderResult:
        """Store the tender durably, then try to deliver it within ``deadline`` seconds.

        Same results as :meth:`cmc_client.Client.post_tender`. After the deadline the attempt goes on
        in the background and records its outcome in the outbox.
        """
        started = time.monotonic()
        offline = self._circuit.is_open()
        entry, held = await asyncio.to_thread(store, self.outbox, tender, now=self._clock, claim=not offline)
        if entry.state != "queued":
            return result_of(entry)
        if offline:
            return queued(entry, "CMC was unreachable a moment ago; the drainer will deliver it")
        if not held or entry.id in self._inflight:
            return queued(entry, "already being delivered")
        self._inflight.add(entry.id)
        task = asyncio.create_task(self._attempt(entry))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            remaining = max(0.0, deadline - (time.monotonic() - started))
            return await asyncio.wait_for(asyncio.shield(task), remaining)
        except TimeoutError:
            self._circuit.stall()  # until this attempt ends, the next sales do not wait on CMC
            task.add_done_callback(lambda _: self._circuit.unstall())
            return queued(entry, f"no answer within {deadline:g} s; delivery goes on in the background")

    async def _attempt(self, entry: Entry) -> TenderResult:
        try:
            outcome = await self._run(self._conversation.deliver(tender_ref(entry)), entry.id)
        except (TransientError, AuthenticationError) as exc:
            if isinstance(exc, TransientError):
                self._circuit.trip()
            return await asyncio.to_thread(record_failure, self.outbox, entry, exc, now=self._clock())
        finally:
            self._inflight.discard(entry.id)
        self._circuit.reset()
        return await asyncio.to_thread(record, self.outbox, entry, outcome, now=self._clock())

    async def drain(self, *, limit: int | None = None) -> DrainReport:
        """Deliver queued tenders oldest first, retrying transient failures with backoff (stamina)."""
        counts: Counter[str] = Counter()
        error = None
        while limit is None or counts.total() < limit:
            entry = await asyncio.to_thread(self.outbox.claim_next, now=self._clock(), exclude=self._inflight)
            if entry is None:
                break
            self._inflight.add(entry.id)
            try:
                outcome = await self._deliver_with_retries(entry)
            except (TransientError, AuthenticationError) as exc:
                await asyncio.to_thread(record_failure, self.outbox, entry, exc, now=self._clock())
                error = f"{type(exc).__name__}: {exc}"
                break
            except asyncio.CancelledError:
                await asyncio.to_thread(
                    record_failure, self.outbox, entry, Exception("cancelled"), now=self._clock()
                )
                raise
            finally:
                self._inflight.discard(entry.id)
            self._circuit.reset()
            await asyncio.to_thread(record, self.outbox, entry, outcome, now=self._clock())
            counts[describe(outcome)] += 1
        status = await self.status()
        return DrainReport(
            delivered=counts["delivered"],
            rejected=counts["rejected"],
            skipped=counts["skipped"],
            remaining=status.queued,
            error=error,
        )

    async def _deliver_with_retries(self, entry: Entry) -> Outcome:
        async for attempt in stamina.retry_context(
            on=should_retry,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_max=self._retry_wait_max,
        ):
            with attempt:
                current = await asyncio.to_thread(self.outbox.get, entry.id)
                return await self._run(self._conversation.deliver(tender_ref(current or entry)), entry.id)
        raise AssertionError("stamina ends with a return or an exception")

    async def start(self) -> AsyncClient:
        """Start the background drainer task (idempotent); returns the client."""
        if self._drainer is None:
            self._drainer = asyncio.create_task(self._drain_loop(), name="cmc-client-drainer")
        return self

    async def _drain_loop(self) -> None:
        while True:
            try:
                report = await self.drain()
            except OutboxError as exc:
                log.error("cmc outbox drain failed: %s", exc)
            else:
                if report.error:
                    log.warning("cmc outbox: %s (%d queued)", report.error, report.remaining)
            await asyncio.sleep(self._poll_interval)

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop the drainer, wait up to ``grace`` s for deliveries in flight, release resources."""
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
        if self._owns_http:
            await self._http.aclose()
        self.outbox.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.close()

    async def status(self) -> Status:
        """Outbox counts per state, the oldest queued tender's age, and the last error."""
        return await asyncio.to_thread(self.outbox.status, now=self._clock())

    async def entries(self, state: State | None = None, *, limit: int = 100) -> list[Entry]:
        """Outbox rows oldest first, optionally of one state."""
        return await asyncio.to_thread(self.outbox.entries, state, limit=limit)

    async def retry(self, outbox_id: int) -> Entry:
        """Move a rejected (or disabled / not-accepted) tender back to queued; raise ``KeyError`` if none."""
        return await asyncio.to_thread(self.outbox.retry, outbox_id, now=self._clock())

    async def settings(self, *, refresh: bool = False) -> wire.SettingsData:
        """CMC settings of this POS system (cached; ``refresh`` forces a lookup)."""
        return await self._run(self._conversation.settings(refresh=refresh), None)

    async def _run(self, flow: Flow[T], entry_id: int | None) -> T:
        reply: httpx2.Response | None = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Call):
                    reply = await self._request(step)
                else:
                    assert entry_id is not None
                    await asyncio.to_thread(
                        self.outbox.save_session, entry_id, step.session_id, now=self._clock()
                    )
                    reply = None
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    async def _request(self, call: Call) -> httpx2.Response:
        kwargs: dict[str, Any] = {"headers": call.headers}
        if call.content:
            kwargs["content"] = call.content
        try:
            return await self._http.request(call.method, call.url, **kwargs)
        except httpx2.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc or 'network error'}") from exc
