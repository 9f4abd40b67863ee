"""The synchronous POS client: the core's flows performed with blocking I/O and threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Any, TypeVar

import httpx2

from cmc_client import wire
from cmc_client._core import ClientCore
from cmc_client._outbox import OutboxEntry, OutboxState, OutboxStatus
from cmc_client._results import DrainReport, TenderResult, VerifyReport
from cmc_client._steps import Call, Concurrently, Finished, Flow, Interrupted, Local, Retrying, Step, advance
from cmc_client._tender import TenderInput

T = TypeVar("T")


class Client(ClientCore[httpx2.Client]):
    """Posts tenders to CMC from a POS, keeping each one in a local outbox until CMC has it.

    ``Client(base_url, pos_system_id, client_id, client_secret, *, outbox_path, ...)``: see the
    README's "Options". ``http`` may be any ``httpx2.Client`` (for example one with a
    ``MockTransport``). The outbox file is checked here: a corrupt or unwritable file raises
    :class:`~cmc_client.OutboxError`. Safe to use from several threads.
    """

    def _open(self, http: httpx2.Client | None, *, timeout: httpx2.Timeout, workers: int) -> httpx2.Client:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cmc-client")
        self._futures: set[Future[Any]] = set()
        self._drainer: threading.Thread | None = None
        return http if http is not None else httpx2.Client(timeout=timeout)

    # --- the till ------------------------------------------------------------------------------

    def post_tender(self, tender: TenderInput, *, deadline: float = 2.0) -> TenderResult:
        """Store the tender durably, then try to deliver it within ``deadline`` seconds.

        Returns ``delivered``, ``queued``, ``rejected``, ``disabled`` or ``not-accepted`` (see
        :data:`~cmc_client.TenderStatus`). A tender without ``transactionDate`` gets the local time
        now. Posting a tender the outbox already holds returns its current result instead of sending
        it twice. Raises :class:`~cmc_client.OutboxError` when the tender could not be stored,
        :class:`~cmc_client.InvalidTenderError` and :class:`~cmc_client.DuplicateTransactionError`.
        """
        return self._run(self._post(tender, deadline))

    # --- the outbox ------------------------------------------------------------------------------

    def drain(self, *, limit: int | None = None) -> DrainReport:
        """Deliver queued tenders oldest first, retrying transient failures with backoff (stamina).

        Stops at the first tender that still fails after the retries (CMC is down: the rest would fail
        too) and reports why. Call it from the host, or let :meth:`start` run it in the background.
        """
        return self._run(self._drain(limit))

    def start(self) -> Client:
        """Start the background drainer thread (idempotent); returns the client."""
        if self._drainer is None:
            self._drainer = threading.Thread(
                target=self._run, args=(self._drain_forever(),), name="cmc-client-drainer", daemon=True
            )
            self._drainer.start()
        return self

    def close(self, *, grace: float = 5.0) -> None:
        """Stop the drainer, wait up to ``grace`` s for deliveries in flight, release resources.

        A delivery still waiting on CMC after that is given up: its tender stays queued for next time.
        """
        self._closing.set()
        give_up_at = time.monotonic() + grace
        if self._drainer is not None:
            self._drainer.join(grace)
        with self._lock:
            pending = set(self._futures)
        wait(pending, timeout=max(0.0, give_up_at - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._run(self._abandon())
        if self._owns_http:
            self._http.close()
        self.outbox.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def status(self) -> OutboxStatus:
        """Outbox counts per state, the oldest queued tender's age, and the last error."""
        return self._run(self._status())

    def entries(self, state: OutboxState | None = None, *, limit: int = 100) -> list[OutboxEntry]:
        """Outbox rows oldest first, optionally of one state."""
        return self._run(self._entries(state, limit))

    def retry(self, outbox_id: int) -> OutboxEntry:
        """Move a rejected (or disabled / not-accepted) tender back to queued; raise ``KeyError`` if none."""
        return self._run(self._retry(outbox_id))

    # --- CMC -------------------------------------------------------------------------------------

    def settings(self, *, refresh: bool = False) -> wire.SettingsData:
        """CMC settings of this POS system (cached; ``refresh`` forces a lookup).

        Raises :class:`~cmc_client.TransientError` or :class:`~cmc_client.AuthenticationError`.
        """
        return self._run(self._settings(refresh))

    def verify(self) -> VerifyReport:
        """Check every delivered tender of the outbox against CMC; report those missing or different.

        Raises :class:`~cmc_client.TransientError` or :class:`~cmc_client.AuthenticationError` when CMC
        cannot be asked.
        """
        return self._run(self._verify())

    # --- performing steps ----------------------------------------------------------------------------

    def _run(self, flow: Flow[T]) -> T:
        step = advance(flow)
        while not isinstance(step, Finished):
            try:
                answer = self._perform(step)
            except Exception as exc:  # the flow decides what an error means
                step = advance(flow, error=exc)
            else:
                step = advance(flow, answer)
        return step.value

    def _perform(self, step: Step) -> object:
        if isinstance(step, Call):
            content = step.content or None
            return self._http.request(step.method, step.url, headers=step.headers, content=content)
        if isinstance(step, Local):
            return step.work()
        if isinstance(step, Concurrently):
            return self._in_background(step)
        if isinstance(step, Retrying):
            for attempt in step.backoff():
                with attempt:
                    return self._run(step.attempt())
            raise AssertionError("stamina ends with a return or an exception")
        if self._closing.wait(step.seconds):
            raise Interrupted("the client is closing")
        return None

    def _in_background(self, step: Concurrently) -> object:
        future = self._pool.submit(self._run, step.flow)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)
        try:
            return future.result(timeout=step.wait)
        except TimeoutError:
            return None

    def _forget(self, future: Future[Any]) -> None:
        with self._lock:
            self._futures.discard(future)
