"""The synchronous POS client: ``post_tender`` never blocks the till longer than its deadline."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
from cmc_client.errors import (
    AuthenticationError,
    CmcClientError,
    OutboxError,
    TransientError,
)
from cmc_client.outbox import Entry, Outbox, State, Status
from cmc_client.protocol import Call, Conversation, Flow, Outcome
from cmc_client.results import DrainReport, TenderResult
from cmc_client.tender import TenderInput

T = TypeVar("T")
log = logging.getLogger("cmc_client")


class _Closing(CmcClientError):
    """The client is closing; stop draining."""


class Client:
    """Posts tenders to CMC from a POS, keeping each one in a local outbox until CMC has it.

    ``http`` may be any ``httpx2.Client`` (for example one with an ``ASGITransport`` or a
    ``MockTransport``); the client closes only an ``http`` it created itself. The outbox file is
    checked here: a corrupt or unwritable file raises :class:`~cmc_client.OutboxError`.
    """

    def __init__(
        self,
        base_url: str,
        pos_system_id: str,
        client_id: str,
        client_secret: str,
        *,
        outbox_path: str | Path,
        http: httpx2.Client | None = None,
        request_timeout: float = 10.0,
        settings_ttl: float = 900.0,
        retry_attempts: int = 5,
        retry_timeout: float = 30.0,
        retry_wait_max: float = 5.0,
        poll_interval: float = 5.0,
        offline_window: float = 1.0,
        keep_delivered: float = 7 * 86400.0,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = Outbox(outbox_path, lease=max(120.0, 12 * request_timeout))
        """The tender outbox (also usable on its own)."""
        self._clock = clock
        self.outbox.prune(before=clock() - keep_delivered)
        self._owns_http = http is None
        self._http = http or httpx2.Client(timeout=httpx2.Timeout(request_timeout, connect=3.0))
        self._conversation = Conversation(
            base_url, pos_system_id, client_id, client_secret, clock=clock, settings_ttl=settings_ttl
        )
        self._retry_attempts = retry_attempts
        self._retry_timeout = retry_timeout
        self._retry_wait_max = retry_wait_max
        self._poll_interval = poll_interval
        self._circuit = Circuit(offline_window)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cmc-client")
        self._inflight: set[int] = set()
        self._futures: set[Future[TenderResult]] = set()
        self._guard = threading.Lock()
        self._stop = threading.Event()
        self._drainer: threading.Thread | None = None

    # --- the till ------------------------------------------------------------------------------

    def post_tender(self, tender: TenderInput, *, deadline: float = 2.0) -> TenderResult:
        """Store the tender durably, then try to deliver it within ``deadline`` seconds.

        Returns ``delivered``, ``queued``, ``rejected``, ``disabled`` or ``not-accepted`` (see
        :data:`~cmc_client.TenderStatus`). Posting a tender the outbox already holds returns its
        current result instead of sending it twice. Raises :class:`~cmc_client.OutboxError` only when
        the tender could not be stored.
        """
        started = time.monotonic()
        offline = self._circuit.is_open()
        entry, held = store(self.outbox, tender, now=self._clock, claim=not offline)
        if entry.state != "queued":
            return result_of(entry)
        if offline:
            return queued(entry, "CMC was unreachable a moment ago; the drainer will deliver it")
        if not held or not self._hold(entry.id):
            return queued(entry, "already being delivered")
        future = self._pool.submit(self._attempt, entry)
        with self._guard:
            self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        try:
            return future.result(timeout=max(0.0, deadline - (time.monotonic() - started)))
        except TimeoutError:
            self._circuit.stall()  # until this attempt ends, the next sales do not wait on CMC
            future.add_done_callback(lambda _: self._circuit.unstall())
            return queued(entry, f"no answer within {deadline:g} s; delivery goes on in the background")

    def _hold(self, entry_id: int) -> bool:
        """Mark a row as in flight in this process; False if it already is."""
        with self._guard:
            if entry_id in self._inflight:
                return False
            self._inflight.add(entry_id)
            return True

    def _attempt(self, entry: Entry) -> TenderResult:
        """One delivery attempt of a held row, recorded in the outbox."""
        try:
            outcome = self._run(self._conversation.deliver(tender_ref(entry)), entry.id)
        except (TransientError, AuthenticationError) as exc:
            if isinstance(exc, TransientError):
                self._circuit.trip()
            return record_failure(self.outbox, entry, exc, now=self._clock())
        finally:
            with self._guard:
                self._inflight.discard(entry.id)
        self._circuit.reset()
        return record(self.outbox, entry, outcome, now=self._clock())

    # --- the outbox ------------------------------------------------------------------------------

    def drain(self, *, limit: int | None = None) -> DrainReport:
        """Deliver queued tenders oldest first, retrying transient failures with backoff (stamina).

        Stops at the first tender that still fails after the retries (CMC is down: the rest would fail
        too) and reports why. Call it from the host, or let :meth:`start` run it in the background.
        """
        counts: Counter[str] = Counter()
        error = None
        while limit is None or counts.total() < limit:
            entry = self._next()
            if entry is None:
                break
            try:
                outcome = self._deliver_with_retries(entry)
            except (TransientError, AuthenticationError, _Closing) as exc:
                record_failure(self.outbox, entry, exc, now=self._clock())
                error = f"{type(exc).__name__}: {exc}"
                break
            finally:
                with self._guard:
                    self._inflight.discard(entry.id)
            self._circuit.reset()
            record(self.outbox, entry, outcome, now=self._clock())
            counts[describe(outcome)] += 1
        return DrainReport(
            delivered=counts["delivered"],
            rejected=counts["rejected"],
            skipped=counts["skipped"],
            remaining=self.outbox.status(now=self._clock()).queued,
            error=error,
        )

    def _next(self) -> Entry | None:
        with self._guard:
            entry = self.outbox.claim_next(now=self._clock(), exclude=self._inflight)
            if entry is not None:
                self._inflight.add(entry.id)
        return entry

    def _deliver_with_retries(self, entry: Entry) -> Outcome:
        for attempt in stamina.retry_context(
            on=should_retry,
            attempts=self._retry_attempts,
            timeout=self._retry_timeout,
            wait_max=self._retry_wait_max,
        ):
            with attempt:
                if self._stop.is_set():
                    raise _Closing("client closing")
                current = self.outbox.get(entry.id) or entry  # a retry reuses the session saved before
                return self._run(self._conversation.deliver(tender_ref(current)), entry.id)
        raise AssertionError("stamina ends with a return or an exception")

    def start(self) -> Client:
        """Start the background drainer thread (idempotent); returns the client."""
        if self._drainer is None:
            self._drainer = threading.Thread(target=self._drain_loop, name="cmc-client-drainer", daemon=True)
            self._drainer.start()
        return self

    def _drain_loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.drain()
            except OutboxError as exc:  # keep going: the POS must learn of it from status()
                log.error("cmc outbox drain failed: %s", exc)
            else:
                if report.error:
                    log.warning("cmc outbox: %s (%d queued)", report.error, report.remaining)
            self._stop.wait(self._poll_interval)

    def close(self, *, grace: float = 5.0) -> None:
        """Stop the drainer, wait up to ``grace`` s for deliveries in flight, release resources.

        Anything not delivered stays queued in the outbox for next time.
        """
        self._stop.set()
        if self._drainer is not None:
            self._drainer.join(grace)
        with self._guard:
            pending = set(self._futures)
        wait(pending, timeout=grace)
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._owns_http:
            self._http.close()
        self.outbox.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    # --- status and settings ------------------------------------------------------------------------

    def status(self) -> Status:
        """Outbox counts per state, the oldest queued tender's age, and the last error."""
        return self.outbox.status(now=self._clock())

    def entries(self, state: State | None = None, *, limit: int = 100) -> list[Entry]:
        """Outbox rows oldest first, optionally of one state."""
        return self.outbox.entries(state, limit=limit)

    def retry(self, outbox_id: int) -> Entry:
        """Move a rejected (or disabled / not-accepted) tender back to queued; raise ``KeyError`` if none."""
        return self.outbox.retry(outbox_id, now=self._clock())

    def settings(self, *, refresh: bool = False) -> wire.SettingsData:
        """CMC settings of this POS system (cached; ``refresh`` forces a lookup).

        Raises :class:`~cmc_client.TransientError` or :class:`~cmc_client.AuthenticationError`.
        """
        return self._run(self._conversation.settings(refresh=refresh), None)

    # --- I/O driver --------------------------------------------------------------------------------

    def _run(self, flow: Flow[T], entry_id: int | None) -> T:
        reply: httpx2.Response | None = None
        try:
            while True:
                step = flow.send(reply)
                if isinstance(step, Call):
                    reply = self._request(step)
                else:
                    assert entry_id is not None
                    self.outbox.save_session(entry_id, step.session_id, now=self._clock())
                    reply = None
        except StopIteration as stop:
            result: T = stop.value
            return result
        finally:
            flow.close()

    def _request(self, call: Call) -> httpx2.Response:
        kwargs: dict[str, Any] = {"headers": call.headers}
        if call.content:
            kwargs["content"] = call.content
        try:
            return self._http.request(call.method, call.url, **kwargs)
        except httpx2.TransportError as exc:
            raise TransientError(f"{type(exc).__name__}: {exc or 'network error'}") from exc
